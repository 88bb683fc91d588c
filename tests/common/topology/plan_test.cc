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

// A join on a field: the stream goes through a join repartition topic (partitioned as the
// table) before the join, then, grouped by a field of the joined value, through a second one.
TEST(TopologyPlanTest, JoinOnAFieldReKeysThroughARepartitionTopicBeforeTheJoin) {
  kiq::v1::Topology topology;
  ASSERT_TRUE(google::protobuf::TextFormat::ParseFromString(
      R"pb(
        application_id: "app"
        sources { topic: "purchases" value_format: FORMAT_JSON }
        sources { topic: "customers" value_format: FORMAT_JSON partitioner: PARTITIONER_CONSISTENT }
        stores {
          name: "customers"
          source: "customers"
          table {}
        }
        stores {
          name: "per_customer"
          source: "purchases"
          count {}
          join { table: "customers" table_as: "customer" by { field: "customer_id" } }
        }
        stores {
          name: "per_city"
          source: "purchases"
          count {}
          join { table: "customers" table_as: "customer" by { field: "customer_id" } }
          group_by { field: "customer.city" }
        }
      )pb",
      &topology));
  absl::StatusOr<TopologyPlan> built =
      TopologyPlan::Build(topology, {{"purchases", 4}, {"customers", 4}});
  ASSERT_OK(built);
  const TopologyPlan& plan = *built;
  std::vector<std::string> names;
  for (const InternalTopic& t : plan.InternalTopics()) {
    names.push_back(absl::StrCat(t.name, ":", t.partitions, t.compacted ? ":compact" : "",
                                 t.co_partitioned ? ":co" : ""));
  }
  EXPECT_THAT(names, ElementsAre("app-members:1:compact", "app-dlq:4",
                                 "app-per_customer-changelog:4:compact:co",
                                 "app-per_city-changelog:4:compact:co",
                                 "app-per_customer-join-repartition:4:co",
                                 "app-per_city-join-repartition:4:co",
                                 "app-per_city-repartition:4:co"));
  // The join repartition topics are partitioned as the table (consistent here), the group_by's
  // as Kafka's default.
  const SourcePlan* join_topic = plan.FindSource("app-per_city-join-repartition");
  ASSERT_NE(join_topic, nullptr);
  EXPECT_TRUE(join_topic->repartition);
  EXPECT_EQ(join_topic->partitioner, PartitionerKind::kConsistent);
  EXPECT_EQ(join_topic->spec.value_format(), kiq::v1::FORMAT_JSON);
  EXPECT_EQ(plan.FindSource("app-per_city-repartition")->partitioner, PartitionerKind::kMurmur2);

  // Who reads what: name, source topic, forwarded to, joined table.
  std::vector<std::string> stages;
  for (const StorePlan& store : plan.stores()) {
    stages.push_back(absl::StrCat(
        store.info.name, " < ", plan.sources()[store.source].spec.topic(),
        store.forward_to >= 0 ? absl::StrCat(" > ", plan.sources()[store.forward_to].spec.topic())
                              : "",
        store.join_table >= 0 ? absl::StrCat(" join ", plan.stores()[store.join_table].info.name)
                              : ""));
  }
  EXPECT_THAT(stages,
              ElementsAre("customers < customers",
                          "per_customer < app-per_customer-join-repartition join customers",
                          "per_city < app-per_city-repartition",
                          "per_customer#join-repartition < purchases > "
                          "app-per_customer-join-repartition",
                          "per_city#join-repartition < purchases > app-per_city-join-repartition",
                          "per_city#repartition < app-per_city-join-repartition > "
                          "app-per_city-repartition join customers"));
  // Queryable stores are keyed as their last topic: per_customer by customer id, routed with
  // the table's partitioner.
  EXPECT_EQ(plan.stores()[plan.StoreIndex("per_customer")].info.partitioner,
            PartitionerKind::kConsistent);
  EXPECT_EQ(plan.QueryableStores().size(), 3u);
}

}  // namespace
}  // namespace kiq
