#include "common/schema/protobuf_json.h"

#include <google/protobuf/compiler/parser.h>
#include <google/protobuf/descriptor.h>
#include <google/protobuf/descriptor.pb.h>
#include <google/protobuf/dynamic_message.h>
#include <google/protobuf/io/tokenizer.h>
#include <google/protobuf/io/zero_copy_stream_impl_lite.h>
#include <google/protobuf/util/json_util.h>

#include "absl/strings/str_cat.h"

namespace kiq::schema {
namespace {

namespace pb = google::protobuf;

// Keeps the first error libprotoc reports, with its position.
class FirstError : public pb::io::ErrorCollector, public pb::DescriptorPool::ErrorCollector {
 public:
  void AddError(int line, pb::io::ColumnNumber column, const std::string& message) override {
    if (error_.empty()) error_ = absl::StrCat("line ", line + 1, ":", column + 1, ": ", message);
  }
  void AddError(const std::string& filename, const std::string& element_name,
                const pb::Message* descriptor, ErrorLocation location,
                const std::string& message) override {
    if (error_.empty()) error_ = absl::StrCat(element_name.empty() ? filename : element_name, ": ", message);
  }
  const std::string& error() const { return error_; }

 private:
  std::string error_;
};

// The deepest message nesting of a value: protobuf's JSON printer recurses once per level.
int Depth(const pb::Message& message, int limit) {
  const pb::Reflection* reflection = message.GetReflection();
  std::vector<const pb::FieldDescriptor*> fields;
  reflection->ListFields(message, &fields);
  int deepest = 0;
  for (const pb::FieldDescriptor* field : fields) {
    if (field->cpp_type() != pb::FieldDescriptor::CPPTYPE_MESSAGE) continue;
    const int n = field->is_repeated() ? reflection->FieldSize(message, field) : 1;
    for (int i = 0; i < n && deepest <= limit; ++i) {
      const pb::Message& child = field->is_repeated()
                                     ? reflection->GetRepeatedMessage(message, field, i)
                                     : reflection->GetMessage(message, field);
      deepest = std::max(deepest, Depth(child, limit - 1));
    }
    if (deepest > limit) break;
  }
  return deepest + 1;
}

}  // namespace

ProtobufSchema::ProtobufSchema() = default;
ProtobufSchema::~ProtobufSchema() = default;

absl::StatusOr<std::unique_ptr<ProtobufSchema>> ProtobufSchema::Parse(absl::string_view text) {
  pb::io::ArrayInputStream input(text.data(), static_cast<int>(text.size()));
  FirstError errors;
  pb::io::Tokenizer tokenizer(&input, &errors);
  pb::FileDescriptorProto file;
  pb::compiler::Parser parser;
  parser.RecordErrorsTo(&errors);
  if (!parser.Parse(&tokenizer, &file)) {
    return absl::InvalidArgumentError(
        absl::StrCat("libprotoc refuses the writer schema: ", errors.error()));
  }
  std::unique_ptr<ProtobufSchema> out(new ProtobufSchema());
  out->file_name_ = "kiq_registry_schema.proto";
  file.set_name(out->file_name_);
  // Well-known types (timestamp, wrappers, ...) come from the ones linked into libprotobuf.
  for (const std::string& dependency : file.dependency()) {
    if (pb::DescriptorPool::generated_pool()->FindFileByName(dependency) == nullptr) {
      return absl::InvalidArgumentError(absl::StrCat(
          "the writer schema imports \"", dependency,
          "\": schema references are not supported (only Protobuf's well-known types)"));
    }
  }
  out->pool_ = std::make_unique<pb::DescriptorPool>(pb::DescriptorPool::generated_pool());
  if (out->pool_->BuildFileCollectingErrors(file, &errors) == nullptr) {
    return absl::InvalidArgumentError(
        absl::StrCat("libprotoc refuses the writer schema: ", errors.error()));
  }
  out->factory_ = std::make_unique<pb::DynamicMessageFactory>(out->pool_.get());
  return out;
}

absl::Status ProtobufSchema::Decode(absl::string_view payload,
                                    const std::vector<int32_t>& message_indexes,
                                    const JsonLimits& limits, std::string* json) const {
  const pb::FileDescriptor* file = pool_->FindFileByName(file_name_);
  const pb::Descriptor* descriptor = nullptr;
  for (size_t i = 0; i < message_indexes.size(); ++i) {
    const int index = message_indexes[i];
    const int count = i == 0 ? file->message_type_count() : descriptor->nested_type_count();
    if (index < 0 || index >= count) {
      return absl::InvalidArgumentError(absl::StrCat(
          "value names message index ", index, " at level ", i, " of its writer schema, which has ",
          count, " messages there"));
    }
    descriptor = i == 0 ? file->message_type(index) : descriptor->nested_type(index);
  }
  if (descriptor == nullptr) return absl::InvalidArgumentError("value names no message");
  std::unique_ptr<pb::Message> message(factory_->GetPrototype(descriptor)->New());
  if (!message->ParseFromArray(payload.data(), static_cast<int>(payload.size()))) {
    return absl::InvalidArgumentError(absl::StrCat(
        "value is not a valid ", descriptor->full_name(), " (truncated or malformed protobuf, ",
        payload.size(), " bytes)"));
  }
  if (Depth(*message, limits.max_depth) > limits.max_depth) {
    return absl::InvalidArgumentError(
        absl::StrCat("value nests deeper than ", limits.max_depth, " levels"));
  }
  pb::util::JsonPrintOptions options;
  options.preserve_proto_field_names = true;
  options.always_print_primitive_fields = true;
  json->clear();
  if (pb::util::Status s = pb::util::MessageToJsonString(*message, json, options); !s.ok()) {
    return absl::InvalidArgumentError(
        absl::StrCat("value does not convert to JSON: ", s.message().as_string()));
  }
  return absl::OkStatus();
}

}  // namespace kiq::schema
