// Showing file-system names: printable() keeps valid UTF-8 and escapes everything else.
#include <gtest/gtest.h>

#include "io/text.h"

using kiln::io::printable;
using kiln::io::utf8_sequence_length;

TEST(Text, PrintableKeepsValidNames) {
  EXPECT_EQ(printable("cats"), "cats");
  EXPECT_EQ(printable("caf\xc3\xa9 \xe2\x82\xac \xf0\x9f\x90\x88"), "caf\xc3\xa9 \xe2\x82\xac \xf0\x9f\x90\x88");
}

TEST(Text, PrintableEscapesControlsAndBadBytes) {
  EXPECT_EQ(printable("a\nb"), "a\\nb");
  EXPECT_EQ(printable("tab\there\r"), "tab\\there\\r");
  EXPECT_EQ(printable(std::string("nul\0x", 5)), "nul\\x00x");
  EXPECT_EQ(printable("del\x7f"), "del\\x7f");
  EXPECT_EQ(printable("caf\xe9"), "caf\\xe9");         // Latin-1
  EXPECT_EQ(printable("back\\slash"), "back\\\\slash");  // so an escape cannot be forged
}

TEST(Text, Utf8SequencesFollowRfc3629) {
  EXPECT_EQ(utf8_sequence_length("a", 0), 1u);
  EXPECT_EQ(utf8_sequence_length("\xc3\xa9", 0), 2u);
  EXPECT_EQ(utf8_sequence_length("\xf4\x8f\xbf\xbf", 0), 4u);  // U+10FFFF
  EXPECT_EQ(utf8_sequence_length("\xc0\xaf", 0), 0u);          // overlong '/'
  EXPECT_EQ(utf8_sequence_length("\xe0\x80\xaf", 0), 0u);      // overlong
  EXPECT_EQ(utf8_sequence_length("\xed\xa0\x80", 0), 0u);      // surrogate U+D800
  EXPECT_EQ(utf8_sequence_length("\xf4\x90\x80\x80", 0), 0u);  // beyond U+10FFFF
  EXPECT_EQ(utf8_sequence_length("\x80", 0), 0u);              // stray continuation
  EXPECT_EQ(utf8_sequence_length("\xe2\x82", 0), 0u);          // cut short
}
