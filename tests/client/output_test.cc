#include "client/output.h"

#include <cmath>
#include <string>

#include <google/protobuf/any.pb.h>

#include "absl/status/status.h"
#include "absl/time/time.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "kiq/v1/membership.pb.h"
#include "kiq/v1/query.pb.h"
#include "tests/testing/status_matchers.h"

namespace kiq::client {
namespace {

using ::kiq::testing::StatusIs;
using ::testing::HasSubstr;

kiq::v1::Entry MakeEntry(const std::string& key, const std::string& value, int32_t partition) {
  kiq::v1::Entry entry;
  entry.set_key(key);
  entry.set_value(value);
  entry.set_partition(partition);
  return entry;
}

TEST(EntryTextTest, ValueIsJsonWhenSet) {
  kiq::v1::Entry entry = MakeEntry("a", "{ \"n\" : 1 }", 0);
  (*entry.mutable_json()->mutable_struct_value()->mutable_fields())["n"].set_number_value(1);
  EXPECT_EQ(EntryValueText(entry), "{\"n\":1}");

  kiq::v1::Entry count = MakeEntry("c", "42", 0);
  count.mutable_json()->set_number_value(42);
  EXPECT_EQ(EntryValueText(count), "42");

  kiq::v1::Entry text = MakeEntry("s", "ignored", 0);
  text.mutable_json()->set_string_value("hi \"you\"");
  EXPECT_EQ(EntryValueText(text), "\"hi \\\"you\\\"\"");
}

TEST(EntryTextTest, ValueIsTextWhenUtf8AndEscapedWhenNot) {
  EXPECT_EQ(EntryValueText(MakeEntry("k", "plain text", 0)), "plain text");
  EXPECT_EQ(EntryValueText(MakeEntry("k", "line\nbreak", 0)), "line\\nbreak");
  EXPECT_EQ(EntryValueText(MakeEntry("k", "\xff\xfe", 0)), "\\xff\\xfe");
  EXPECT_EQ(EntryValueText(MakeEntry("k", "", 0)), "");
}

TEST(EntryTextTest, NonFiniteNumbersAreJsonStrings) {
  kiq::v1::Entry entry = MakeEntry("k", "nan", 0);
  entry.mutable_json()->set_number_value(std::nan(""));
  EXPECT_EQ(EntryValueText(entry), "\"NaN\"");
}

TEST(EntryTextTest, ValueFallsBackToBytesWhenTheJsonValueIsEmpty) {
  kiq::v1::Entry entry = MakeEntry("k", "raw", 0);
  entry.mutable_json();  // Set, but with no kind: prints as nothing.
  EXPECT_EQ(EntryValueText(entry), "raw");
}

TEST(EntryTextTest, KeyComesFromKeyBytesWhenNotUtf8) {
  kiq::v1::Entry entry;
  entry.set_key_bytes("\xff\x01");
  EXPECT_EQ(EntryKeyText(entry), "\\xff\\x01");
  EXPECT_EQ(EntryKeyText(MakeEntry("h\xc3\xa9", "", 0)), "h\xc3\xa9");
}

TEST(RenderEntriesTableTest, AlignsColumns) {
  google::protobuf::RepeatedPtrField<kiq::v1::Entry> entries;
  *entries.Add() = MakeEntry("a", "1", 0);
  *entries.Add() = MakeEntry("customer-17", "gold", 11);
  *entries.Add() = MakeEntry("h\xc3\xa9", "\xff", 2);  // Width counts code points, not bytes.
  EXPECT_EQ(RenderEntriesTable(entries),
            "KEY          VALUE  PARTITION\n"
            "a            1      0\n"
            "customer-17  gold   11\n"
            "h\xc3\xa9           \\xff   2\n");
}

TEST(RenderEntriesTableTest, WideValuesWidenTheColumn) {
  google::protobuf::RepeatedPtrField<kiq::v1::Entry> entries;
  kiq::v1::Entry entry = MakeEntry("a", "", 3);
  (*entry.mutable_json()->mutable_struct_value()->mutable_fields())["name"].set_string_value("Ada");
  *entries.Add() = entry;
  EXPECT_EQ(RenderEntriesTable(entries),
            "KEY  VALUE           PARTITION\n"
            "a    {\"name\":\"Ada\"}  3\n");
}

TEST(RenderEntriesTableTest, SaysNoEntriesWhenEmpty) {
  EXPECT_EQ(RenderEntriesTable({}), "no entries\n");
}

TEST(RenderGetTableTest, FoundIsAOneRowTable) {
  kiq::v1::GetResponse response;
  response.set_found(true);
  *response.mutable_entry() = MakeEntry("a", "x", 4);
  EXPECT_EQ(RenderGetTable(response),
            "KEY  VALUE  PARTITION\n"
            "a    x      4\n");
}

TEST(RenderGetTableTest, NotFound) {
  EXPECT_EQ(RenderGetTable(kiq::v1::GetResponse()), "not found\n");
}

TEST(RenderCountTextTest, SaysApproximate) {
  kiq::v1::CountResponse response;
  response.set_count(1234);
  EXPECT_EQ(RenderCountText(response), "count: 1234\n");
  response.add_missing_partitions(3);
  response.add_missing_partitions(5);
  EXPECT_EQ(RenderCountText(response),
            "count: 1234 (partial: partitions 3,5 missing)\n");
}

constexpr int64_t kNowMs = 1'800'000'000'000;
const absl::Time kNow = absl::FromUnixMillis(kNowMs);

void Own(kiq::v1::NodeInfo* node, int32_t partition, kiq::v1::PartitionState state) {
  kiq::v1::OwnedPartition* owned = node->add_partitions();
  owned->set_partition(partition);
  owned->set_state(state);
}

kiq::v1::NodeInfo MakeNode(const std::string& id, const std::string& host, int32_t port,
                           int64_t lease_expiry_ms) {
  kiq::v1::NodeInfo node;
  node.set_node_id(id);
  node.set_host(host);
  node.set_port(port);
  node.set_lease_expiry_ms(lease_expiry_ms);
  return node;
}

TEST(PartitionStateNameTest, NamesEveryStateAndNumbersUnknownOnes) {
  EXPECT_EQ(PartitionStateName(kiq::v1::PARTITION_STATE_ACTIVE), "ACTIVE");
  EXPECT_EQ(PartitionStateName(kiq::v1::PARTITION_STATE_RESTORING), "RESTORING");
  EXPECT_EQ(PartitionStateName(kiq::v1::PARTITION_STATE_FAILED), "FAILED");
  EXPECT_EQ(PartitionStateName(kiq::v1::PARTITION_STATE_UNSPECIFIED), "UNSPECIFIED");
  EXPECT_EQ(PartitionStateName(static_cast<kiq::v1::PartitionState>(9)), "UNKNOWN(9)");
}

TEST(OwnedPartitionsTextTest, SortedWithALetterForEachStateNotServed) {
  kiq::v1::NodeInfo node;
  Own(&node, 5, kiq::v1::PARTITION_STATE_FAILED);
  Own(&node, 0, kiq::v1::PARTITION_STATE_ACTIVE);
  Own(&node, 12, kiq::v1::PARTITION_STATE_UNSPECIFIED);
  Own(&node, 2, kiq::v1::PARTITION_STATE_RESTORING);
  Own(&node, 1, kiq::v1::PARTITION_STATE_ACTIVE);
  Own(&node, 13, static_cast<kiq::v1::PartitionState>(9));
  EXPECT_EQ(OwnedPartitionsText(node.partitions()), "0,1,2R,5F,12?,13?");
}

TEST(OwnedPartitionsTextTest, DashWhenNone) {
  EXPECT_EQ(OwnedPartitionsText(kiq::v1::NodeInfo().partitions()), "-");
}

TEST(LeaseTextTest, SecondsLeftRoundedUpThenExpired) {
  EXPECT_EQ(LeaseText(kNowMs + 30'000, kNow), "30s");
  EXPECT_EQ(LeaseText(kNowMs + 4'500, kNow), "5s");
  EXPECT_EQ(LeaseText(kNowMs + 1, kNow), "1s");  // Alive: never "0s".
  EXPECT_EQ(LeaseText(kNowMs, kNow), "expired");
  EXPECT_EQ(LeaseText(kNowMs - 2'000, kNow), "expired");
  EXPECT_EQ(LeaseText(0, kNow), "-");  // Unset.
}

TEST(RenderNodesTableTest, AlignsColumns) {
  kiq::v1::NodesResponse response;
  kiq::v1::NodeInfo* n1 = response.add_nodes();
  *n1 = MakeNode("n1", "10.0.0.1", 7070, kNowMs + 30'000);
  n1->add_stores("order_count");
  n1->add_stores("customers");
  Own(n1, 1, kiq::v1::PARTITION_STATE_ACTIVE);
  Own(n1, 0, kiq::v1::PARTITION_STATE_ACTIVE);
  Own(n1, 4, kiq::v1::PARTITION_STATE_RESTORING);
  kiq::v1::NodeInfo* n2 = response.add_nodes();
  *n2 = MakeNode("node-two", "::1", 7071, kNowMs - 1);
  n2->add_stores("customers");
  Own(n2, 5, kiq::v1::PARTITION_STATE_FAILED);
  *response.add_nodes() = MakeNode("n3", "kiq-2.kiq", 7072, 0);
  EXPECT_EQ(RenderNodesTable(response, kNow),
            "NODE      ENDPOINT        STORES                 PARTITIONS  LEASE\n"
            "n1        10.0.0.1:7070   order_count,customers  0,1,4R      30s\n"
            "node-two  [::1]:7071      customers              5F          expired\n"
            "n3        kiq-2.kiq:7072  -                      -           -\n");
}

TEST(RenderNodesTableTest, EscapesWhatTheServerSends) {
  kiq::v1::NodesResponse response;
  kiq::v1::NodeInfo* node = response.add_nodes();
  *node = MakeNode("n\n1", "h\x1b", 1, kNowMs + 1'000);
  node->add_stores("a\tb");
  EXPECT_EQ(RenderNodesTable(response, kNow),
            "NODE  ENDPOINT  STORES  PARTITIONS  LEASE\n"
            "n\\n1  h\\x1b:1   a\\tb    -           1s\n");
}

TEST(RenderNodesTableTest, SaysNoNodesWhenEmpty) {
  EXPECT_EQ(RenderNodesTable(kiq::v1::NodesResponse(), kNow), "no nodes\n");
}

TEST(RenderNodeForKeyTextTest, NamesKeyPartitionOwnerAndState) {
  kiq::v1::NodeForKeyResponse response;
  response.set_partition(3);
  *response.mutable_owner() = MakeNode("n2", "kiq-1.kiq", 7070, kNowMs);
  response.set_state(kiq::v1::PARTITION_STATE_ACTIVE);
  EXPECT_EQ(RenderNodeForKeyText("order_count", "alice", response),
            "key \"alice\" of store order_count → partition 3 → node n2 at kiq-1.kiq:7070 "
            "(ACTIVE)\n");
  response.set_state(kiq::v1::PARTITION_STATE_RESTORING);
  EXPECT_EQ(RenderNodeForKeyText("order_count", "\xff\"", response),
            "key \"\\xff\\\"\" of store order_count → partition 3 → node n2 at kiq-1.kiq:7070 "
            "(RESTORING)\n");
}

TEST(RenderNodeForKeyTextTest, SaysWhenNoLiveNodeOwnsThePartition) {
  kiq::v1::NodeForKeyResponse response;
  response.set_partition(6);
  EXPECT_EQ(RenderNodeForKeyText("order_count", "carol", response),
            "key \"carol\" of store order_count → partition 6 → no live owner\n");
}

TEST(RenderNodeForKeyTextTest, ClipsALongKey) {
  kiq::v1::NodeForKeyResponse response;
  EXPECT_THAT(RenderNodeForKeyText("s", std::string(300, 'k'), response),
              HasSubstr("k\"...(300 bytes) of store s"));
}

TEST(RenderJsonTest, MetadataResponsesNameStatesAndKeepEveryField) {
  kiq::v1::NodeForKeyResponse response;
  response.set_partition(6);
  absl::StatusOr<std::string> json = RenderJson(response);
  ASSERT_OK(json);
  EXPECT_EQ(*json, "{\"partition\":6,\"state\":\"PARTITION_STATE_UNSPECIFIED\"}\n");

  kiq::v1::NodesResponse nodes;
  kiq::v1::NodeInfo* node = nodes.add_nodes();
  *node = MakeNode("n1", "h", 1, kNowMs);
  Own(node, 0, kiq::v1::PARTITION_STATE_ACTIVE);
  json = RenderJson(nodes);
  ASSERT_OK(json);
  EXPECT_EQ(*json,
            "{\"nodes\":[{\"nodeId\":\"n1\",\"host\":\"h\",\"port\":1,\"httpEndpoint\":\"\","
            "\"stores\":[],\"partitions\":[{\"partition\":0,\"state\":\"PARTITION_STATE_ACTIVE\","
            "\"offsets\":[],\"lagRecords\":\"0\"}],\"generation\":0,\"leaseExpiryMs\":\"1800000000000\"}]}\n");
  EXPECT_EQ(*RenderJson(kiq::v1::NodesResponse()), "{\"nodes\":[]}\n");
}

TEST(RenderJsonTest, OneLineWithDefaultFieldsPresent) {
  absl::StatusOr<std::string> json = RenderJson(kiq::v1::GetResponse());
  ASSERT_OK(json);
  EXPECT_EQ(*json, "{\"found\":false,\"standbyReads\":[]}\n");

  kiq::v1::CountResponse count;
  count.set_count(7);
  json = RenderJson(count);
  ASSERT_OK(json);
  EXPECT_EQ(*json, "{\"count\":\"7\",\"missingPartitions\":[],\"standbyReads\":[]}\n");
}

TEST(RenderJsonTest, EntryWithJsonValueAndBase64Bytes) {
  kiq::v1::GetResponse response;
  response.set_found(true);
  kiq::v1::Entry* entry = response.mutable_entry();
  *entry = MakeEntry("a", "{\"n\":1}", 2);
  (*entry->mutable_json()->mutable_struct_value()->mutable_fields())["n"].set_number_value(1);
  absl::StatusOr<std::string> json = RenderJson(response);
  ASSERT_OK(json);
  EXPECT_EQ(*json,
            "{\"found\":true,\"entry\":{\"key\":\"a\",\"keyBytes\":\"\",\"value\":\"eyJuIjoxfQ==\","
            "\"json\":{\"n\":1},\"partition\":2},\"standbyReads\":[]}\n");
}

TEST(RenderJsonTest, NonUtf8KeyIsBase64KeyBytes) {
  kiq::v1::ScanResponse response;
  kiq::v1::Entry* entry = response.add_entries();
  entry->set_key_bytes("\xff\x01");
  entry->set_value("\xfe");
  absl::StatusOr<std::string> json = RenderJson(response);
  ASSERT_OK(json);
  EXPECT_THAT(*json, HasSubstr("\"key\":\"\",\"keyBytes\":\"/wE=\",\"value\":\"/g==\""));
  EXPECT_THAT(*json, HasSubstr("\"nextPageToken\":\"\""));
}

TEST(RenderJsonTest, FailsForAnAnyOfAnUnknownType) {
  google::protobuf::Any any;
  any.set_type_url("type.googleapis.com/nope.Nope");
  any.set_value("x");
  absl::StatusOr<std::string> json = RenderJson(any);
  EXPECT_THAT(json, StatusIs(absl::StatusCode::kInternal, "render google.protobuf.Any as JSON"));
}

TEST(MergePageTest, AppendsEntriesAndKeepsTheLatestTokenAndPosition) {
  kiq::v1::ScanResponse first;
  *first.add_entries() = MakeEntry("a", "1", 0);
  first.set_next_page_token("t1");
  first.mutable_position()->add_offsets()->set_offset(5);
  first.add_missing_partitions(2);
  kiq::v1::ScanResponse second;
  *second.add_entries() = MakeEntry("b", "2", 1);
  second.mutable_position()->add_offsets()->set_offset(6);
  second.add_missing_partitions(2);
  second.add_missing_partitions(4);

  kiq::v1::ScanResponse merged;
  MergePage(first, &merged);
  EXPECT_EQ(merged.next_page_token(), "t1");
  MergePage(second, &merged);
  ASSERT_EQ(merged.entries_size(), 2);
  EXPECT_EQ(merged.entries(0).key(), "a");
  EXPECT_EQ(merged.entries(1).key(), "b");
  EXPECT_EQ(merged.next_page_token(), "");
  EXPECT_EQ(merged.position().offsets(0).offset(), 6);
  EXPECT_THAT(merged.missing_partitions(), ::testing::ElementsAre(2, 4));
}

}  // namespace
}  // namespace kiq::client
