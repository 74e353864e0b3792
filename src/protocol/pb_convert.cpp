// FileAttrs/EntryType <-> protobuf (pb_convert.hpp). Stateless: any thread.

#include "protocol/pb_convert.hpp"

namespace xfer::protocol {

namespace v1 = ::xfer::v1;

EntryType from_pb(v1::EntryType t) {
  switch (t) {
    case v1::ENTRY_FILE:
      return EntryType::kFile;
    case v1::ENTRY_DIRECTORY:
      return EntryType::kDirectory;
    case v1::ENTRY_SYMLINK:
      return EntryType::kSymlink;
    default:
      return EntryType::kOther;
  }
}

v1::EntryType to_pb(EntryType t) {
  switch (t) {
    case EntryType::kFile:
      return v1::ENTRY_FILE;
    case EntryType::kDirectory:
      return v1::ENTRY_DIRECTORY;
    case EntryType::kSymlink:
      return v1::ENTRY_SYMLINK;
    default:
      return v1::ENTRY_OTHER;
  }
}

FileAttrs from_pb(const v1::FileAttrs& p) {
  FileAttrs a;
  a.type = from_pb(p.type());
  a.size = p.size();
  a.mode = p.mode() & 07777;
  a.mtime_ns = p.mtime_ns();
  a.symlink_target = p.symlink_target();
  a.allocated = p.allocated();
  return a;
}

void to_pb(const FileAttrs& a, v1::FileAttrs* p) {
  p->set_type(to_pb(a.type));
  p->set_size(a.size);
  p->set_mode(a.mode);
  p->set_mtime_ns(a.mtime_ns);
  p->set_symlink_target(a.symlink_target);
  p->set_allocated(a.allocated);
}

}  // namespace xfer::protocol
