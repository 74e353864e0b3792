// libFuzzer target for xferd's gRPC request handlers (src/server/service.cpp)
// through a real client stub over loopback, against a real in-process
// server whose root holds a seeded /sandbox (the token's prefix).
//
// Input: the first byte picks the method (% 17: Stat, List, Mkdir, Remove,
// Rename, Touch, Symlink, SetAttrs, OpenSession, CloseSession, IssueToken,
// SubmitJob, WatchJob, CancelJob, Checksum, Signature, WatchChanges), the
// rest is that method's request message
// (protobuf wire format; an input that does not parse is skipped). The call
// carries a read-write bearer token for "/sandbox" and a 2 s deadline; its
// status is ignored (errors are expected). Streams are read for at most 16
// messages; an accepted job is watched until it ends (cancelled after 2 s),
// an opened session is closed; a change watch that says ready sees a file
// made in the sandbox for 100 ms, then is cancelled, and the server must
// let go of the folder within 2 s. The sandbox is seeded afresh for every input.
//
// Fails (abort) when, after the call: the server does not answer
// ServerInfo, anything beside the root or in the root outside /sandbox
// changed, a file has setuid/setgid/sticky bits, a temporary or a
// descriptor is left below the root, or a job does not end within 5 s of a
// cancel.

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include <fmt/format.h>
#include <google/protobuf/stubs/logging.h>

#include "fuzz_server.hpp"
#include "xfer/server/auth.hpp"

namespace {

using xfer_fuzz::fail;
namespace fs = xfer_fuzz::fs;
namespace v1 = ::xfer::v1;

constexpr int kMethods = 17;
constexpr int kMaxMessages = 16;
constexpr const char* kSubject = "grpc-fuzz";

struct State {
  xfer_fuzz::FuzzServer* fz = nullptr;
  std::string token;
  fs::path sandbox;
  xfer_fuzz::Snapshot private_want;  // the root without /sandbox, as seeded
};

// The sandbox as every input finds it: the seed tree, plus symlinks leading
// to the root outside the prefix.
void seed_sandbox(const fs::path& sandbox) {
  fs::create_directories(sandbox);
  xfer_fuzz::seed_tree(sandbox, /*hardlink=*/false);
  fs::create_symlink("../sandbox2", sandbox / "side");
  fs::create_symlink("../privdir", sandbox / "priv");
}

State& state() {
  static State* s = [] {
    auto* st = new State;
    st->fz = &xfer_fuzz::fuzz_server("xfer_grpc_fuzz");
    const fs::path& root = st->fz->root;
    st->sandbox = root / "sandbox";
    // In the root but outside the token's prefix: must not change either.
    fs::create_directories(root / "privdir");
    fs::create_directories(root / "sandbox2");
    for (const auto& [name, content] :
         {std::pair{"private.txt", "outside the prefix\n"},
          std::pair{"sandboxfile", "shares the prefix's spelling\n"},
          std::pair{"sandbox2/file.txt", "a sibling folder\n"},
          std::pair{"privdir/inner.txt", "deeper\n"},
          std::pair{"privdir/.inner.txt.xfer-part-job1", "a partial\n"}}) {
      std::FILE* f = std::fopen((root / name).c_str(), "w");
      if (f == nullptr) fail("cannot seed the root");
      std::fputs(content, f);
      std::fclose(f);
    }
    seed_sandbox(st->sandbox);
    st->private_want = xfer_fuzz::snapshot(root, st->sandbox);
    st->token = xfer_fuzz::make_token(kSubject, "/sandbox", true);
    return st;
  }();
  return *s;
}

void prepare(grpc::ClientContext& ctx, const std::string& token, int seconds = 2) {
  ctx.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(seconds));
  ctx.AddMetadata("authorization", "Bearer " + token);
}

template <typename Reply, typename Open>
void read_stream(const std::string& token, Open open) {
  grpc::ClientContext ctx;
  prepare(ctx, token);
  auto reader = open(ctx);
  Reply m;
  for (int i = 0; i < kMaxMessages && reader->Read(&m); ++i) {
  }
  ctx.TryCancel();
  (void)reader->Finish();
}

// Watches `id` until it ends (state other than "running"), up to `seconds`.
bool watch_until_done(State& st, const std::string& id, int seconds) {
  v1::JobId req;
  req.set_job_id(id);
  grpc::ClientContext ctx;
  prepare(ctx, st.token, seconds);
  auto reader = st.fz->stub->WatchJob(&ctx, req);
  v1::JobProgress p;
  bool ended = false;
  while (reader->Read(&p)) {
    if (p.state() != "running") ended = true;
  }
  (void)reader->Finish();
  return ended;
}

// A job accepted by the input must end on its own (the seed files copy in
// milliseconds) or, say with a bwlimit of a few bytes/s, when cancelled.
void wait_for_job(State& st, const std::string& id) {
  if (watch_until_done(st, id, 2)) return;
  v1::JobId req;
  req.set_job_id(id);
  v1::Empty empty;
  grpc::ClientContext ctx;
  prepare(ctx, st.token, 5);
  (void)st.fz->stub->CancelJob(&ctx, req, &empty);
  if (!watch_until_done(st, id, 5)) fail("job " + id + " did not end within 5 s of a cancel");
}

// No descriptor below the root any more, waiting up to `wait` (a
// cancelled stream's handler notices within 250 ms and stops its watch).
void wait_released(const fs::path& root, std::chrono::milliseconds wait) {
  const std::string prefix = root.string() + "/";
  const auto until = std::chrono::steady_clock::now() + wait;
  while (std::chrono::steady_clock::now() < until) {
    bool held = false;
    std::error_code ec;
    for (const auto& e : fs::directory_iterator("/proc/self/fd", ec)) {
      auto target = fs::read_symlink(e.path(), ec);
      if (!ec && target.string().rfind(prefix, 0) == 0) held = true;
    }
    if (!held) return;
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
}

void watch_changes(State& st, const v1::WatchChangesRequest& req) {
  grpc::ClientContext ctx;
  prepare(ctx, st.token);
  auto reader = st.fz->stub->WatchChanges(&ctx, req);
  v1::WatchChangesReply reply;
  if (reader->Read(&reply) && reply.ready()) {
    std::FILE* f = std::fopen((st.sandbox / "watched.txt").c_str(), "w");
    if (f != nullptr) std::fclose(f);
    std::thread cancel([&] {
      std::this_thread::sleep_for(std::chrono::milliseconds(100));
      ctx.TryCancel();
    });
    for (int i = 0; i < kMaxMessages && reader->Read(&reply); ++i) {
    }
    cancel.join();
  }
  ctx.TryCancel();
  (void)reader->Finish();
  wait_released(st.fz->root, std::chrono::milliseconds(2000));
}

void close_session(State& st, const std::string& id) {
  v1::CloseSessionRequest req;
  req.set_session_id(id);
  v1::Empty empty;
  grpc::ClientContext ctx;
  prepare(ctx, st.token, 5);
  (void)st.fz->stub->CloseSession(&ctx, req, &empty);
}

// Unary call of `method` with the parsed request; false when the input
// does not parse as Req.
template <typename Req, typename Reply, typename Method>
bool unary(State& st, const std::uint8_t* data, std::size_t size, Method method,
           Reply* reply_out = nullptr, grpc::Status* status_out = nullptr) {
  Req req;
  if (!req.ParseFromArray(data, static_cast<int>(size))) return false;
  Reply reply;
  grpc::ClientContext ctx;
  prepare(ctx, st.token);
  grpc::Status status = (st.fz->stub.get()->*method)(&ctx, req, &reply);
  if (reply_out != nullptr) *reply_out = reply;
  if (status_out != nullptr) *status_out = status;
  return true;
}

// Runs one call; false when the input does not parse.
bool call(State& st, int method, const std::uint8_t* data, std::size_t size) {
  using Stub = v1::Xfer::Stub;
  switch (method) {
    case 0:
      return unary<v1::PathRequest, v1::FileAttrs>(st, data, size, &Stub::Stat);
    case 1: {
      v1::ListRequest req;
      if (!req.ParseFromArray(data, static_cast<int>(size))) return false;
      read_stream<v1::ListReply>(
          st.token, [&](grpc::ClientContext& ctx) { return st.fz->stub->List(&ctx, req); });
      return true;
    }
    case 2:
      return unary<v1::MkdirRequest, v1::Empty>(st, data, size, &Stub::Mkdir);
    case 3:
      return unary<v1::RemoveRequest, v1::Empty>(st, data, size, &Stub::Remove);
    case 4:
      return unary<v1::RenameRequest, v1::Empty>(st, data, size, &Stub::Rename);
    case 5:
      return unary<v1::TouchRequest, v1::Empty>(st, data, size, &Stub::Touch);
    case 6:
      return unary<v1::SymlinkRequest, v1::Empty>(st, data, size, &Stub::Symlink);
    case 7:
      return unary<v1::SetAttrsRequest, v1::Empty>(st, data, size, &Stub::SetAttrs);
    case 8: {
      v1::Session session;
      grpc::Status status;
      if (!unary<v1::OpenSessionRequest, v1::Session>(st, data, size, &Stub::OpenSession, &session,
                                                      &status)) {
        return false;
      }
      if (status.ok()) close_session(st, session.session_id());
      return true;
    }
    case 9:
      return unary<v1::CloseSessionRequest, v1::Empty>(st, data, size, &Stub::CloseSession);
    case 10:
      return unary<v1::IssueTokenRequest, v1::IssuedToken>(st, data, size, &Stub::IssueToken);
    case 11: {
      v1::JobAccepted accepted;
      grpc::Status status;
      v1::JobRequest req;
      if (!req.ParseFromArray(data, static_cast<int>(size))) return false;
      if (!unary<v1::JobRequest, v1::JobAccepted>(st, data, size, &Stub::SubmitJob, &accepted,
                                                  &status)) {
        return false;
      }
      if (status.ok()) wait_for_job(st, accepted.job_id());
      return true;
    }
    case 12: {
      v1::JobId req;
      if (!req.ParseFromArray(data, static_cast<int>(size))) return false;
      read_stream<v1::JobProgress>(
          st.token, [&](grpc::ClientContext& ctx) { return st.fz->stub->WatchJob(&ctx, req); });
      return true;
    }
    case 13:
      return unary<v1::JobId, v1::Empty>(st, data, size, &Stub::CancelJob);
    case 14:
      return unary<v1::PathRequest, v1::ChecksumReply>(st, data, size, &Stub::Checksum);
    case 15: {
      v1::SignatureRequest req;
      if (!req.ParseFromArray(data, static_cast<int>(size))) return false;
      read_stream<v1::SignatureReply>(
          st.token, [&](grpc::ClientContext& ctx) { return st.fz->stub->Signature(&ctx, req); });
      return true;
    }
    default: {
      v1::WatchChangesRequest req;
      if (!req.ParseFromArray(data, static_cast<int>(size))) return false;
      watch_changes(st, req);
      return true;
    }
  }
}

}  // namespace

extern "C" int LLVMFuzzerInitialize(int*, char***) {
  // Most inputs hold invalid UTF-8 in a string field: not worth a log line.
  google::protobuf::SetLogHandler(nullptr);
  (void)state();
  return 0;
}

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  if (size == 0) return -1;
  State& st = state();
  const int method = data[0] % kMethods;
  if (!call(st, method, data + 1, size - 1)) return -1;  // not a request: not worth keeping

  xfer_fuzz::check_server_alive(*st.fz);
  xfer_fuzz::check_outside(*st.fz);
  if (auto d = xfer_fuzz::diff(st.private_want, xfer_fuzz::snapshot(st.fz->root, st.sandbox));
      !d.empty()) {
    fail(fmt::format("method {}: the root outside the token's prefix changed: {}", method, d));
  }
  xfer_fuzz::check_no_special_bits(st.fz->root);
  xfer_fuzz::check_root_released(st.fz->root, !xfer_fuzz::names_temporaries(data, size));
  std::error_code ec;
  fs::remove_all(st.sandbox, ec);  // a symlink or file there is removed, not followed
  if (ec) fail("cannot remove the sandbox: " + ec.message());
  seed_sandbox(st.sandbox);
  return 0;
}
