#pragma once
// FileAttrs/EntryType <-> their protobuf messages (proto/xfer/v1), shared by
// the xfer:// client and xferd.
//
// Pure functions: any thread.

#include "xfer/core/file_attrs.hpp"
#include "xfer/v1/xfer.pb.h"

namespace xfer::protocol {

EntryType from_pb(xfer::v1::EntryType t);
xfer::v1::EntryType to_pb(EntryType t);
// Mode bits are masked to 07777: a peer cannot set file-type bits.
FileAttrs from_pb(const xfer::v1::FileAttrs& p);
void to_pb(const FileAttrs& a, xfer::v1::FileAttrs* p);

}  // namespace xfer::protocol
