// Names of entry types (file_attrs.hpp). Pure functions.

#include "xfer/core/file_attrs.hpp"

namespace xfer {

std::string_view to_string(EntryType type) {
  switch (type) {
    case EntryType::kFile:
      return "file";
    case EntryType::kDirectory:
      return "directory";
    case EntryType::kSymlink:
      return "symlink";
    case EntryType::kOther:
      return "other";
  }
  return "other";
}

}  // namespace xfer
