#include "client/output.h"

#include <cmath>
#include <string>

#include <google/protobuf/any.pb.h>

#include "absl/status/status.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
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
  EXPECT_EQ(RenderCountText(response), "count: 1234 (approximate)\n");
  response.add_missing_partitions(3);
  response.add_missing_partitions(5);
  EXPECT_EQ(RenderCountText(response),
            "count: 1234 (approximate; partial: partitions 3,5 missing)\n");
}

TEST(RenderJsonTest, OneLineWithDefaultFieldsPresent) {
  absl::StatusOr<std::string> json = RenderJson(kiq::v1::GetResponse());
  ASSERT_OK(json);
  EXPECT_EQ(*json, "{\"found\":false}\n");

  kiq::v1::CountResponse count;
  count.set_count(7);
  json = RenderJson(count);
  ASSERT_OK(json);
  EXPECT_EQ(*json, "{\"count\":\"7\",\"missingPartitions\":[]}\n");
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
            "\"json\":{\"n\":1},\"partition\":2}}\n");
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
