// Internal: names from the file system (folder and file names) shown to people. A name is bytes;
// it may hold a newline, a control character or bytes that are not UTF-8, and printed raw it would
// break a line-per-result output or a terminal. printable() is the one way kiln shows such a name.
#pragma once

#include <string>

namespace kiln::io {

// `s` with every byte that is not printable UTF-8 written as an escape: \n, \t, \r, \\ and \xNN
// (control characters, DEL and bytes of ill-formed UTF-8 sequences). Printable UTF-8, also
// non-ASCII, is kept as it is; so a valid name reads the same, and distinct names stay distinct.
std::string printable(const std::string& s);

// The length of the well-formed UTF-8 sequence that starts at s[i] (1 to 4), or 0 when the bytes
// there are not one (a stray continuation byte, an overlong form, a surrogate, beyond U+10FFFF).
std::size_t utf8_sequence_length(const std::string& s, std::size_t i);

}  // namespace kiln::io
