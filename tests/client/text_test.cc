#include "client/text.h"

#include <string>

#include "gtest/gtest.h"

namespace kiq::client {
namespace {

TEST(IsValidUtf8Test, AcceptsAsciiMultibyteAndEmpty) {
  EXPECT_TRUE(IsValidUtf8(""));
  EXPECT_TRUE(IsValidUtf8("orders-42"));
  EXPECT_TRUE(IsValidUtf8("h\xc3\xa9llo \xe2\x9c\x93 \xf0\x9f\x98\x80"));  // é ✓ 😀
  EXPECT_TRUE(IsValidUtf8(std::string("a\0b", 3)));  // NUL is a valid code point.
}

TEST(IsValidUtf8Test, RejectsMalformedSequences) {
  EXPECT_FALSE(IsValidUtf8("\xff"));              // Never valid in UTF-8.
  EXPECT_FALSE(IsValidUtf8("\x80"));              // Lone continuation byte.
  EXPECT_FALSE(IsValidUtf8("\xc3"));              // Truncated.
  EXPECT_FALSE(IsValidUtf8("\xc0\x80"));          // Overlong NUL.
  EXPECT_FALSE(IsValidUtf8("\xe0\x80\xaf"));      // Overlong '/'.
  EXPECT_FALSE(IsValidUtf8("\xed\xa0\x80"));      // Surrogate U+D800.
  EXPECT_FALSE(IsValidUtf8("\xf4\x90\x80\x80"));  // Above U+10FFFF.
  EXPECT_FALSE(IsValidUtf8("ok\xe2\x9c"));        // Truncated at the end.
}

TEST(EscapeForTerminalTest, KeepsPrintableUtf8) {
  EXPECT_EQ(EscapeForTerminal("h\xc3\xa9llo \xe2\x9c\x93"), "h\xc3\xa9llo \xe2\x9c\x93");
  EXPECT_EQ(EscapeForTerminal("say \"hi\""), "say \"hi\"");
}

TEST(EscapeForTerminalTest, EscapesControlCharactersAndBackslash) {
  EXPECT_EQ(EscapeForTerminal("a\nb\tc\rd"), "a\\nb\\tc\\rd");
  EXPECT_EQ(EscapeForTerminal(std::string("\0\x1b[31m\x7f", 7)), "\\x00\\x1b[31m\\x7f");
  EXPECT_EQ(EscapeForTerminal("C:\\dir"), "C:\\\\dir");
  EXPECT_EQ(EscapeForTerminal("\xc2\x85"), "\\u0085");  // C1 control NEL.
}

TEST(EscapeForTerminalTest, EscapesBytesThatAreNotUtf8AsHex) {
  EXPECT_EQ(EscapeForTerminal("\xff\xfe"), "\\xff\\xfe");
  EXPECT_EQ(EscapeForTerminal("user\xc3"
                              "1"),
            "user\\xc31");
}

TEST(EscapeForTerminalTest, DifferentInputsStayDifferent) {
  // A literal backslash-x-f-f must not look like the byte 0xff.
  EXPECT_NE(EscapeForTerminal("\\xff"), EscapeForTerminal("\xff"));
  EXPECT_NE(EscapeForTerminal("\\n"), EscapeForTerminal("\n"));
}

TEST(QuoteForMessageTest, QuotesAndEscapes) {
  EXPECT_EQ(QuoteForMessage("a"), "\"a\"");
  EXPECT_EQ(QuoteForMessage("a\"b"), "\"a\\\"b\"");
  EXPECT_EQ(QuoteForMessage("\xff"), "\"\\xff\"");
  EXPECT_EQ(QuoteForMessage(""), "\"\"");
}

TEST(QuoteForMessageTest, ClipsLongKeysAtACodePointBoundary) {
  EXPECT_EQ(QuoteForMessage(std::string(300, 'k')),
            "\"" + std::string(64, 'k') + "\"...(300 bytes)");
  // 63 ASCII bytes then a 2-byte character across the 64-byte cut: the character is dropped.
  const std::string key = std::string(63, 'k') + "\xc3\xa9" + std::string(10, 'k');
  EXPECT_EQ(QuoteForMessage(key), "\"" + std::string(63, 'k') + "\"...(75 bytes)");
}

TEST(DisplayWidthTest, CountsCodePoints) {
  EXPECT_EQ(DisplayWidth(""), 0u);
  EXPECT_EQ(DisplayWidth("abc"), 3u);
  EXPECT_EQ(DisplayWidth("h\xc3\xa9llo"), 5u);
  EXPECT_EQ(DisplayWidth("\xe2\x9c\x93"), 1u);
}

}  // namespace
}  // namespace kiq::client
