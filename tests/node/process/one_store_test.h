#pragma once

#include <stdlib.h>

#include <filesystem>
#include <memory>
#include <string>
#include <utility>

#include "gtest/gtest.h"
#include "node/process/processor.h"
#include "node/store/staged_batch.h"
#include "node/store/store_engine.h"
#include "tests/testing/status_matchers.h"

namespace kiq::node {

// A StoreEngine holding one store in a fresh temp dir, a StagedBatch on it and a slot for the
// processor under test; the dir is removed afterwards. For processor tests.
class OneStoreTest : public ::testing::Test {
 protected:
  explicit OneStoreTest(std::string store) : store_(std::move(store)) {}

  void SetUp() override {
    std::string tmpl = ::testing::TempDir() + store_ + "_store_test.XXXXXX";
    ASSERT_NE(mkdtemp(tmpl.data()), nullptr) << "mkdtemp " << tmpl;
    dir_ = tmpl;
    OpenEngine();
  }

  // Closes the processor, the batch and the engine, and opens the engine again on the same
  // dir with a new batch (the processor is the test's to make again).
  void Reopen() {
    processor_.reset();
    batch_.reset();
    engine_.reset();
    OpenEngine();
  }

  void OpenEngine() {
    absl::StatusOr<std::unique_ptr<StoreEngine>> engine = StoreEngine::Open(dir_ + "/db", {store_});
    ASSERT_OK(engine);
    engine_ = std::move(*engine);
    absl::StatusOr<StoreHandle> handle = engine_->Handle(store_);
    ASSERT_OK(handle);
    handle_ = *handle;
    batch_ = std::make_unique<StagedBatch>(*engine_);
  }

  void TearDown() override {
    processor_.reset();
    batch_.reset();
    engine_.reset();
    std::error_code ec;
    std::filesystem::remove_all(dir_, ec);
  }

  const std::string store_;
  std::string dir_;
  std::unique_ptr<StoreEngine> engine_;
  StoreHandle handle_;
  std::unique_ptr<StagedBatch> batch_;
  std::unique_ptr<Processor> processor_;
};

}  // namespace kiq::node
