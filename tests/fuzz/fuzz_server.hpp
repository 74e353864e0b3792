#pragma once
// The in-process xferd the server fuzzers drive (one per process, over a
// fresh temp folder with a sentinel folder beside the root), the seed tree,
// and the checks run after every input.

#include <grpcpp/grpcpp.h>

#include <cstddef>
#include <cstdint>
#include <filesystem>
#include <map>
#include <memory>
#include <string>
#include <string_view>

#include "xfer/server/server.hpp"
#include "xfer/v1/xfer.grpc.pb.h"

namespace xfer_fuzz {

namespace fs = std::filesystem;

using Snapshot = std::map<std::string, std::string>;

struct FuzzServer {
  fs::path base;     // mkdtemp folder holding the three below
  fs::path root;     // the served root
  fs::path state;    // state_dir
  fs::path outside;  // sentinel: symlinks in the root point here; must never change
  std::unique_ptr<xfer::server::Server> server;
  std::unique_ptr<::xfer::v1::Xfer::Stub> stub;
  Snapshot outside_want;  // the sentinel folder as seeded
};

// Starts the server on the first call (auth required, listeners on
// 127.0.0.1:0) and removes its folder at exit. `name` prefixes the folder.
FuzzServer& fuzz_server(const char* name);

// A bearer token signed with the server's secret, valid for an hour.
std::string make_token(std::string_view subject, std::string_view prefix, bool write);

// Prints `what` (and the folder, kept for a look) and aborts: libFuzzer
// saves the input as a crash.
[[noreturn]] void fail(const std::string& what);

// Fills `dir` (created when missing) with the seed tree: files, a folder, a
// legitimate partial, a FIFO, symlinks leading out of the root (absolute,
// relative, to "..") and planted partials that are a symlink and (with
// `hardlink`) a hard link to the sentinel's file.
void seed_tree(const fs::path& dir, bool hardlink);
// Removes everything below `dir` without following any symlink.
void clear_dir(const fs::path& dir);

// Every entry below `dir` (not following symlinks; `skip` and what is below
// it left out) with its type, mode, size, mtime, symlink target and file
// content: equal snapshots mean nothing there changed.
Snapshot snapshot(const fs::path& dir, const fs::path& skip = {});
// The first difference between two snapshots, "" when equal.
std::string diff(const Snapshot& want, const Snapshot& got);

// Aborts when the sentinel folder or the temp folder's listing changed.
void check_outside(FuzzServer& fz);
// Aborts when a file or folder below `dir` has a setuid, setgid or sticky
// bit (the server runs with allow_special_bits = false).
void check_no_special_bits(const fs::path& dir);
// Aborts when a descriptor of this process still points below `root` or
// (with `temporaries`) a server temporary (".xfer-tmp-") is left there: the
// server's state once its sessions and calls have ended. Pass
// temporaries = false when the input itself may have named such a file.
void check_root_released(const fs::path& root, bool temporaries);
// True when the input holds "xfer-tmp" (a client may name a file so).
bool names_temporaries(const std::uint8_t* data, std::size_t size);
// Aborts unless the server answers ServerInfo within 5 s.
void check_server_alive(FuzzServer& fz);

}  // namespace xfer_fuzz
