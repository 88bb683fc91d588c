#pragma once

#include <cstddef>
#include <string>
#include <string_view>

// Text helpers shared by the client (which must decide between `key` and `key_bytes`) and the
// renderers (which must keep arbitrary bytes from breaking a table or a terminal).
namespace kiq::client {

// Whether `s` is well-formed UTF-8 (RFC 3629: no overlong forms, no surrogates, nothing above
// U+10FFFF). Protobuf `string` fields must hold exactly that, so anything else has to travel in
// the API's `*_bytes` escape hatches.
bool IsValidUtf8(std::string_view s);

// Bytes as one line of terminal text. Well-formed UTF-8 is kept, except that backslash and
// control characters are escaped (\\ \n \r \t \xNN, and \uNNNN for C1 controls) so a value can
// neither break a table row nor move the cursor; bytes that are not part of well-formed UTF-8
// become \xNN. Different inputs always give different outputs.
std::string EscapeForTerminal(std::string_view bytes);

// A key or bound for an error message: escaped as above (plus `"`), quoted, and clipped to 64
// bytes, because keys can be long or binary. E.g. "a\xff" or "aaaa"...(300 bytes).
std::string QuoteForMessage(std::string_view bytes);

// Terminal columns taken by UTF-8 text, counted as one per code point: enough to align tables
// of ASCII and most scripts (East Asian wide characters are counted as one column, not two).
size_t DisplayWidth(std::string_view utf8);

}  // namespace kiq::client
