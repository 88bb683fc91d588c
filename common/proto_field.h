#pragma once

#include <cstdint>
#include <string>
#include <variant>

#include <google/protobuf/descriptor.h>
#include <google/protobuf/message.h>

namespace kiq {

// One parsed value for a scalar protobuf field, of the field's C++ type.
using FieldValue = std::variant<int32_t, int64_t, uint32_t, uint64_t, double, float, bool,
                                const google::protobuf::EnumValueDescriptor*, std::string>;

// Sets the singular `field` of `message` to `value`, or appends it to a repeated one, through
// reflection. `value` must hold the field's C++ type (an invariant of the callers, which parse
// by that type: a mismatch aborts).
void SetOrAddField(google::protobuf::Message* message,
                   const google::protobuf::FieldDescriptor* field, FieldValue value);

}  // namespace kiq
