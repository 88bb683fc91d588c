#include "common/topology/plan.h"

#include "gmock/gmock.h"
#include "google/protobuf/text_format.h"
#include "gtest/gtest.h"
#include "tests/testing/status_matchers.h"

namespace kiq {
namespace {

using ::testing::ElementsAre;

TopologyPlan OrderCountPlan() {
  kiq::v1::Topology topology;
  EXPECT_TRUE(google::protobuf::TextFormat::ParseFromString(
      R"pb(
        application_id: "app"
        sources { topic: "orders" value_format: FORMAT_JSON }
        sources { topic: "customers" value_format: FORMAT_JSON }
        stores {
          name: "customers"
          source: "customers"
          table {}
        }
        stores {
          name: "per_name"
          source: "orders"
          join { table: "customers" }
          group_by { field: "customers.name" }
          count {}
        }
      )pb",
      &topology));
  absl::StatusOr<TopologyPlan> plan =
      TopologyPlan::Build(topology, {{"orders", 3}, {"customers", 3}});
  EXPECT_OK(plan);
  return *std::move(plan);
}

TEST(TopologyPlanTest, InternalTopicsIncludeMembersAndDeadLetters) {
  const TopologyPlan plan = OrderCountPlan();
  std::vector<std::string> names;
  for (const InternalTopic& t : plan.InternalTopics()) {
    names.push_back(absl::StrCat(t.name, ":", t.partitions, t.compacted ? ":compact" : "",
                                 t.co_partitioned ? ":co" : ""));
  }
  EXPECT_THAT(names,
              ElementsAre("app-members:1:compact", "app-dlq:3",
                          "app-per_name-changelog:3:compact:co", "app-per_name-repartition:3:co"));
  EXPECT_EQ(plan.members_topic(), "app-members");
  EXPECT_EQ(plan.dlq_topic(), "app-dlq");
}

}  // namespace
}  // namespace kiq
