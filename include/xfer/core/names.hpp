#pragma once
// The one validation for names that arrive from a peer (docs/server.md,
// "Threat model"). Everything a client or a server sends that becomes part
// of a path or a file name passes one of these before it touches the file
// system: a single path component (a listing entry, the last component of
// a server path), or an identifier (job ids, resume names, session ids) that
// is joined into hidden names and state folders.

#include <cstddef>
#include <string_view>

#include "xfer/core/result.hpp"

namespace xfer {

inline constexpr std::size_t kMaxNameBytes = 255;  // NAME_MAX
inline constexpr std::size_t kMaxIdBytes = 64;
// The longest relative path a changed-path report may name (PATH_MAX):
// watchers never report a longer one, and the client and the engine refuse
// one from a peer.
inline constexpr std::size_t kMaxChangedPathBytes = 4096;

// A single path component: 1..255 bytes, no '/', no NUL, not "." or "..".
// kInvalidArgument "invalid <what> ..." naming the (printable) value.
Status validate_name_component(std::string_view name, std::string_view what);

// A relative path ("a/b/c"): each '/'-separated component a valid name as
// above, so no leading, trailing or doubled '/', no "." or "..". The empty
// path (the root itself) only when `allow_empty`.
Status validate_relative_path(std::string_view path, std::string_view what,
                              bool allow_empty = false);

// xfer's own partials and temporaries (".NAME.xfer-part-ID",
// ".NAME.xfer-tmp-...", docs/local-backend.md): never compared, synced or
// deleted by a sync (a resume needs its partials).
bool is_xfer_temporary(std::string_view name);

// An identifier: 1..64 bytes of [A-Za-z0-9_-] (so it can never be a path, a
// hidden name or an option). kInvalidArgument otherwise.
Status validate_id(std::string_view id, std::string_view what);

// `s` with control characters and non-ASCII bytes escaped (\xNN), at most
// `max` bytes of input shown: for error messages and logs about hostile
// input.
std::string printable_name(std::string_view s, std::size_t max = 200);

}  // namespace xfer
