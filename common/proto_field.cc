#include "common/proto_field.h"

#include <cstdio>
#include <cstdlib>

namespace kiq {

void SetOrAddField(google::protobuf::Message* message,
                   const google::protobuf::FieldDescriptor* field, FieldValue value) {
  using google::protobuf::FieldDescriptor;
  const google::protobuf::Reflection* r = message->GetReflection();
  const bool rep = field->is_repeated();
  const auto expect = [&](size_t index) {
    if (value.index() != index) {
      std::fprintf(stderr, "kiq::SetOrAddField: value of the wrong type for field %s\n",
                   field->full_name().c_str());
      std::abort();
    }
  };
  switch (field->cpp_type()) {
    case FieldDescriptor::CPPTYPE_INT32:
      expect(0);
      rep ? r->AddInt32(message, field, std::get<0>(value))
          : r->SetInt32(message, field, std::get<0>(value));
      return;
    case FieldDescriptor::CPPTYPE_INT64:
      expect(1);
      rep ? r->AddInt64(message, field, std::get<1>(value))
          : r->SetInt64(message, field, std::get<1>(value));
      return;
    case FieldDescriptor::CPPTYPE_UINT32:
      expect(2);
      rep ? r->AddUInt32(message, field, std::get<2>(value))
          : r->SetUInt32(message, field, std::get<2>(value));
      return;
    case FieldDescriptor::CPPTYPE_UINT64:
      expect(3);
      rep ? r->AddUInt64(message, field, std::get<3>(value))
          : r->SetUInt64(message, field, std::get<3>(value));
      return;
    case FieldDescriptor::CPPTYPE_DOUBLE:
      expect(4);
      rep ? r->AddDouble(message, field, std::get<4>(value))
          : r->SetDouble(message, field, std::get<4>(value));
      return;
    case FieldDescriptor::CPPTYPE_FLOAT:
      expect(5);
      rep ? r->AddFloat(message, field, std::get<5>(value))
          : r->SetFloat(message, field, std::get<5>(value));
      return;
    case FieldDescriptor::CPPTYPE_BOOL:
      expect(6);
      rep ? r->AddBool(message, field, std::get<6>(value))
          : r->SetBool(message, field, std::get<6>(value));
      return;
    case FieldDescriptor::CPPTYPE_ENUM:
      expect(7);
      rep ? r->AddEnum(message, field, std::get<7>(value))
          : r->SetEnum(message, field, std::get<7>(value));
      return;
    case FieldDescriptor::CPPTYPE_STRING:
      expect(8);
      rep ? r->AddString(message, field, std::get<8>(std::move(value)))
          : r->SetString(message, field, std::get<8>(std::move(value)));
      return;
    case FieldDescriptor::CPPTYPE_MESSAGE:
      break;
  }
  std::fprintf(stderr, "kiq::SetOrAddField: %s is a message field\n", field->full_name().c_str());
  std::abort();
}

}  // namespace kiq
