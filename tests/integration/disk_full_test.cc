// A real kiq-node whose data dir is a 2 MiB tmpfs that fills up during ingestion (the test
// machine runs as root; skipped where mounting is not permitted, and on an external Kafka):
// ingestion stops with one line naming the data dir and the reason, reads of what was committed
// keep serving, /readyz answers 503 with the reason in JSON, and after --failure-grace the
// process exits 1; restarted on the still-full disk it exits 1 with the reason (at the open, or
// at the first commit). Before: SIGABRT
// on RocksDB's assertion (`sync_without_flush_called_`), at the failure and at every restart.
#include <signal.h>
#include <sys/mount.h>

#include <cerrno>
#include <cstring>
#include <filesystem>
#include <string>
#include <vector>

#include <httplib.h>

#include "absl/strings/str_cat.h"
#include "absl/time/time.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "tests/testing/kafka_fixture.h"
#include "tests/testing/kiq_processes.h"
#include "tests/testing/process.h"
#include "tests/testing/queries.h"
#include "tests/testing/status_matchers.h"

namespace kiq::testing {
namespace {

using ::testing::HasSubstr;
using ::testing::Not;

constexpr int kPartitions = 2;

class DiskFullTest : public KafkaFixture {
 protected:
  void SetUp() override {
    if (!ExternalBootstrapServers().empty()) GTEST_SKIP() << "needs kiq-dev-kafka";
    StartKafka("diskfull", OrdersDemoTopics(kPartitions));
    mnt_ = dir_ + "/full";
    std::filesystem::create_directories(mnt_);
    if (mount("tmpfs", mnt_.c_str(), "tmpfs", 0, "size=2m") != 0) {
      GTEST_SKIP() << "cannot mount a tmpfs at " << mnt_ << ": " << std::strerror(errno);
    }
    mounted_ = true;
  }

  void TearDown() override {
    node_.reset();  // SIGKILLed if still running: nothing may keep the mount busy
    restarted_.reset();
    if (mounted_) {
      EXPECT_EQ(umount2(mnt_.c_str(), MNT_DETACH), 0) << std::strerror(errno);
    }
  }

  httplib::Result Readyz() {
    httplib::Client http("127.0.0.1", node_->http_port());
    return http.Get("/readyz");
  }

  std::string mnt_;
  bool mounted_ = false;
  std::unique_ptr<NodeProcess> node_;
  std::unique_ptr<Process> restarted_;
};

TEST_F(DiskFullTest, FullDataDirStopsIngestionServesReadsAnswers503AndExitsOne) {
  const std::string data_dir = mnt_ + "/data";
  auto node =
      LaunchNode(ExampleTopology("orders"), "n1", {"--data-dir=" + data_dir, "--failure-grace=5s"});
  ASSERT_OK(node);
  node_ = std::move(*node);
  NodeClient client(node_->target());

  // Committed while the disk has room, and readable after it is full.
  for (int i = 0; i < 4; ++i) {
    ProduceAndTrack("customers", absl::StrCat("early-", i), std::string(1000, 'e'));
  }
  ASSERT_TRUE(WaitFor(
      [&] {
        kiq::v1::GetResponse response;
        return client.GetAtLeast("customers", "early-3", produced_, &response, 2).ok();
      },
      absl::Seconds(60)));

  // 50 KB values until the 2 MiB are gone (the WAL alone outgrows them).
  for (int i = 0; i < 120; ++i) {
    ASSERT_OK(producer_->ProduceAsync(Topic("customers"), absl::StrCat("big-", i),
                                      std::string(50'000, 'b')));
  }
  ASSERT_OK(producer_->Flush());

  std::string body;
  std::string content_type;
  ASSERT_TRUE(WaitFor(
      [&] {
        httplib::Result ready = Readyz();
        if (!ready || ready->status != 503 ||
            ready->body.find("ingestion stopped") == std::string::npos) {
          return false;
        }
        body = ready->body;
        content_type = ready->get_header_value("Content-Type");
        return true;
      },
      absl::Seconds(60)))
      << node_->process().ReadLog();
  EXPECT_EQ(content_type, "application/json");
  EXPECT_THAT(body, HasSubstr("{\"ready\":false,\"reason\":\"ingestion stopped: "));
  EXPECT_THAT(body, HasSubstr("No space left on device"));
  EXPECT_THAT(body, HasSubstr(data_dir));
  // Reads of what was committed keep serving during the grace.
  kiq::v1::GetResponse early;
  ASSERT_TRUE(client.Get("customers", "early-0", &early).ok());
  EXPECT_EQ(early.entry().value(), std::string(1000, 'e'));

  // Then the process exits 1 by itself, having said why, once.
  absl::StatusOr<int> code = node_->process().Wait(absl::Seconds(60));
  ASSERT_OK(code);
  const std::string log = node_->process().ReadLog();
  EXPECT_EQ(*code, 1) << log;
  EXPECT_THAT(log, HasSubstr(absl::StrCat("ingestion failed (data dir ", data_dir, "): ")));
  EXPECT_THAT(log, HasSubstr("No space left on device"));
  EXPECT_THAT(log, Not(HasSubstr("Assertion")));

  // Restarted on the still-full disk: exit 1 with the reason, no abort. (RocksDB's recovery of
  // the WAL may still fit, or not: the failure is at the open or at the first commit.)
  auto restarted = Process::Start(
      {kNodeBin, "--config=" + ExampleTopology("orders"),
       "--bootstrap-servers=" + bootstrap_servers(), "--node-id=n1", "--data-dir=" + data_dir,
       "--grpc-port=0", "--http-port=-1", "--admin-port=-1", "--failure-grace=0s"},
      dir_ + "/restarted.log");
  ASSERT_OK(restarted);
  restarted_ = std::move(*restarted);
  code = restarted_->Wait(absl::Seconds(60));
  ASSERT_OK(code);
  const std::string restart_log = restarted_->ReadLog();
  EXPECT_EQ(*code, 1) << restart_log;
  EXPECT_THAT(restart_log, HasSubstr(data_dir + "/stores"));
  EXPECT_THAT(restart_log, HasSubstr("No space left on device"));
  EXPECT_THAT(restart_log, Not(HasSubstr("Assertion")));
}

}  // namespace
}  // namespace kiq::testing
