#pragma once

#include <cstddef>

#include "absl/strings/string_view.h"

namespace kiq {

// Length of the well-formed UTF-8 sequence at the start of `s` (storing its code point in
// `*code_point`), or 0 if `s` does not start with one (RFC 3629: no overlong forms, no
// surrogates, nothing above U+10FFFF).
size_t DecodeUtf8(absl::string_view s, char32_t* code_point);

// Whether all of `s` is well-formed UTF-8. Protobuf `string` fields and JSON text (RFC 8259)
// must hold exactly that.
bool IsValidUtf8(absl::string_view s);

}  // namespace kiq
