#pragma once
// What a namespace entry is and its attributes: the vocabulary every layer
// shares (backends produce it, the protocol carries it, the engine plans by
// it), so it lives in core.

#include <cstdint>
#include <string>
#include <string_view>

namespace xfer {

enum class EntryType : std::uint8_t { kFile, kDirectory, kSymlink, kOther };
std::string_view to_string(EntryType type);
// The type in st_mode bits (S_IFMT: the same numbers on SFTP's wire).
EntryType entry_type_from_mode(std::uint32_t mode);

// Attributes of one namespace entry, never following a final symlink.
struct FileAttrs {
  EntryType type = EntryType::kFile;
  std::uint64_t size = 0;
  std::uint32_t mode = 0644;    // permission bits (07777)
  std::int64_t mtime_ns = 0;    // nanoseconds since the epoch
  std::string symlink_target;   // for kSymlink
  std::uint64_t allocated = 0;  // bytes actually allocated (sparse detection), 0 = unknown
  std::uint64_t device = 0;     // identity for loop/self-copy checks, 0 = unknown
  std::uint64_t inode = 0;
  // false: a stream whose length is known only at its end (HTTP without a
  // Content-Length, a pipe); `size` is then 0 and the file is read
  // sequentially until a read returns 0.
  bool size_known = true;
};

}  // namespace xfer
