// The confined, fd-relative backend over xferd's root (confined.hpp).
// Called from gRPC threads, data-connection threads and job threads.

#include "server/confined.hpp"

#include <fcntl.h>
#include <sys/stat.h>

#include <ctime>

#include "backend/local/fs_at.hpp"
#include "xfer/backend/local.hpp"
#include "xfer/core/names.hpp"
#include "xfer/engine/watcher.hpp"

namespace xfer::server {

class ConfinedRoot {
 public:
  ConfinedRoot(std::shared_ptr<const ServerRoot> root, ConfinedOptions options)
      : root_(std::move(root)) {
    policy_.confined = true;
    policy_.allow_special_bits = options.allow_special_bits;
    auto probe = make_local_backend();
    caps_ = probe->capabilities();
    env_.umask = fs::current_umask();
  }
  const ServerRoot& root() const { return *root_; }
  const fs::FsPolicy& policy() const { return policy_; }
  fs::SinkEnv& env() { return env_; }
  const Capabilities& caps() const { return caps_; }

 private:
  std::shared_ptr<const ServerRoot> root_;
  fs::FsPolicy policy_;
  fs::SinkEnv env_;
  Capabilities caps_;
};

namespace {

constexpr std::size_t kMaxSymlinkTarget = 4096;

class ConfinedBackend final : public Backend {
 public:
  ConfinedBackend(std::shared_ptr<ConfinedRoot> root, TokenScope scope)
      : root_(std::move(root)), scope_(std::move(scope)) {}

  const Capabilities& capabilities() const override { return root_->caps(); }
  std::string describe() const override { return "root " + root_->root().path(); }

  Result<FileAttrs> stat(std::string_view path) override {
    XFER_ASSIGN_OR_RETURN(auto p, open(path, false, "stat"));
    return fs::stat_at(at(p));
  }
  Status list(std::string_view path, const ListOptions& options, const EntrySink& sink) override {
    XFER_ASSIGN_OR_RETURN(auto p, open(path, false, "list"));
    // Partials and temporaries are not listed: a recursive copy must not
    // take another transfer's half-written file for the user's.
    return fs::list_at(
        at(p), options,
        [&sink](Entry&& e) -> Status {
          if (is_local_temporary(e.name)) return ok_status();
          return sink(std::move(e));
        },
        root_->policy());
  }
  Status mkdir(std::string_view path, bool parents) override {
    if (!parents) {
      XFER_ASSIGN_OR_RETURN(auto p, open(path, true, "mkdir"));
      if (p.name == ".") return errno_error(EEXIST, "mkdir", "/");
      return mkdir_level(p, false, true);
    }
    // One level at a time, each resolved beneath the root and checked.
    XFER_ASSIGN_OR_RETURN(std::string server, normalize_server_path(path));
    for (std::size_t pos = 1; pos <= server.size(); ++pos) {
      if (pos != server.size() && server[pos] != '/') continue;
      XFER_ASSIGN_OR_RETURN(auto level, open(server.substr(0, pos), true, "mkdir"));
      if (level.name == ".") continue;
      XFER_TRY(mkdir_level(level, true, pos == server.size()));
    }
    return ok_status();
  }
  Status remove(std::string_view path, bool recursive) override {
    XFER_ASSIGN_OR_RETURN(auto p, open(path, true, "remove"));
    if (p.name == ".") {
      return make_error(ErrorCode::kPermission, "remove", "/", "refusing to remove the root");
    }
    return fs::remove_at(at(p), recursive);
  }
  Status rename(std::string_view from, std::string_view to) override {
    XFER_ASSIGN_OR_RETURN(auto a, open(from, true, "rename"));
    XFER_ASSIGN_OR_RETURN(auto b, open(to, true, "rename"));
    if (a.name == "." || b.name == ".") {
      return make_error(ErrorCode::kPermission, "rename", "/", "refusing to rename the root");
    }
    return fs::rename_at(at(a), at(b));
  }
  Status touch(std::string_view path, std::optional<std::int64_t> mtime_ns) override {
    XFER_ASSIGN_OR_RETURN(auto p, open(path, true, "touch"));
    return fs::touch_at(at(p), mtime_ns);
  }
  Status symlink(std::string_view target, std::string_view path, const FileAttrs& attrs) override {
    XFER_ASSIGN_OR_RETURN(auto p, open(path, true, "symlink"));
    if (p.name == ".") return errno_error(EEXIST, "symlink", "/");
    if (target.empty() || target.size() > kMaxSymlinkTarget ||
        target.find('\0') != std::string_view::npos) {
      return make_error(ErrorCode::kInvalidArgument, "symlink", p.server_path,
                        "invalid symlink target (empty, NUL byte or over 4096 bytes)");
    }
    return fs::symlink_at(std::string(target), at(p), attrs);
  }
  Status set_attrs(std::string_view path, const FileAttrs& attrs) override {
    XFER_ASSIGN_OR_RETURN(auto p, open(path, true, "set attributes"));
    return fs::set_attrs_at(at(p), attrs, root_->policy());
  }
  // The folder is opened on the checked resolution and watched from that
  // descriptor; the watcher opens everything below it beneath it, through
  // no symlink (engine/watcher.hpp), so the scope holds for the subtree.
  Result<std::unique_ptr<ChangeWatch>> watch(std::string_view path, std::size_t root,
                                             std::shared_ptr<ChangeFeed> feed,
                                             const WatchOptions& options) override {
    XFER_ASSIGN_OR_RETURN(auto p, open(path, false, "watch"));
    UniqueFd folder(
        ::openat(p.dir.get(), p.name.c_str(), O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC));
    if (!folder.valid()) {
      if (errno == ENOTDIR || errno == ELOOP) {
        return make_error(ErrorCode::kInvalidArgument, "watch", p.server_path,
                          "not a folder (a symlink is never followed)");
      }
      return errno_error(errno, "watch", p.server_path);
    }
    XFER_ASSIGN_OR_RETURN(auto w, TreeWatcher::start_at(root, std::move(folder), p.server_path,
                                                        std::move(feed), options));
    return std::unique_ptr<ChangeWatch>(std::move(w));
  }

  Result<std::unique_ptr<Source>> open_source(std::string_view path) override {
    XFER_ASSIGN_OR_RETURN(auto p, open(path, false, "open"));
    XFER_TRY(not_temporary(p, "open"));
    return fs::open_source_at(at(p), root_->policy());
  }
  Result<std::unique_ptr<Sink>> open_sink(std::string_view path,
                                          const SinkOptions& options) override {
    XFER_ASSIGN_OR_RETURN(auto p, open(path, true, "open"));
    if (p.name == ".") {
      return make_error(ErrorCode::kIsDirectory, "open", "/", "the root is a directory");
    }
    XFER_TRY(not_temporary(p, "open"));
    // The resume name becomes part of a hidden file name beside the target.
    if (!options.resume_name.empty()) XFER_TRY(validate_id(options.resume_name, "resume name"));
    fs::At where = at(p);
    // The sink keeps the parent's descriptor: commit publishes into that
    // very folder (linkat/renameat), whatever happens to its name meanwhile.
    return fs::open_sink_at(std::move(p.dir), std::move(where), options, root_->policy(),
                            root_->env());
  }

 private:
  // Resolves `path` once and checks the token's scope on that resolution.
  Result<ServerRoot::Parent> open(std::string_view path, bool write, std::string_view op) {
    if (scope_.expires_at > 0 && std::time(nullptr) >= scope_.expires_at) {
      return make_error(ErrorCode::kPermission, op, printable_name(path, 200),
                        "the token has expired");
    }
    XFER_ASSIGN_OR_RETURN(auto p, root_->root().open_parent(path));
    if (!scope_.covers(p.server_path) || !scope_.covers(p.canonical_path)) {
      return make_error(ErrorCode::kPermission, op, p.server_path,
                        "path outside the token's scope");
    }
    if (write && !scope_.write) {
      return make_error(ErrorCode::kPermission, op, p.server_path, "token is read-only");
    }
    return p;
  }
  // mkdirat, and when the name exists: never follows a symlink there to
  // judge it, since its target may lie outside the root and "exists and is
  // a folder" would tell a peer what is there. An existing symlink is left
  // to the next level's resolution (beneath the root, or refused) when it is
  // on the way, and is "not a folder" when it is the folder asked for.
  static Status mkdir_level(const ServerRoot::Parent& p, bool exist_ok, bool last) {
    if (::mkdirat(p.dir.get(), p.name.c_str(), 0777) == 0) return ok_status();
    const int err = errno;
    if (err != EEXIST) return errno_error(err, "mkdir", p.server_path);
    struct stat st {};
    if (::fstatat(p.dir.get(), p.name.c_str(), &st, AT_SYMLINK_NOFOLLOW) != 0) {
      return errno_error(errno, "mkdir", p.server_path);
    }
    if (S_ISDIR(st.st_mode) || (S_ISLNK(st.st_mode) && !last)) {
      return exist_ok ? ok_status() : errno_error(EEXIST, "mkdir", p.server_path);
    }
    return errno_error(exist_ok ? ENOTDIR : EEXIST, "mkdir", p.server_path);
  }

  // The server's own partials and temporaries (".x.xfer-part-*",
  // ".x.xfer-tmp-*") are not files a peer opens: another transfer may be
  // writing or truncating them right now. They are reached only through a
  // sink's resume name.
  static Status not_temporary(const ServerRoot::Parent& p, std::string_view op) {
    if (!is_local_temporary(p.name)) return ok_status();
    return make_error(ErrorCode::kPermission, op, p.server_path,
                      "an xfer partial or temporary file, not opened directly");
  }
  static fs::At at(const ServerRoot::Parent& p) {
    return fs::At{p.dir.get(), p.name, p.server_path};
  }

  std::shared_ptr<ConfinedRoot> root_;
  TokenScope scope_;
};

}  // namespace

std::shared_ptr<ConfinedRoot> make_confined_root(std::shared_ptr<const ServerRoot> root,
                                                 ConfinedOptions options) {
  return std::make_shared<ConfinedRoot>(std::move(root), options);
}

std::unique_ptr<Backend> make_confined_backend(std::shared_ptr<ConfinedRoot> root,
                                               TokenScope scope) {
  return std::make_unique<ConfinedBackend>(std::move(root), std::move(scope));
}

Result<std::string> check_token_scope(const ServerRoot& root, const TokenScope& scope,
                                      std::string_view path, bool write, std::string_view op) {
  XFER_ASSIGN_OR_RETURN(auto r, root.resolve(path));
  if (!scope.covers(r.server_path) || !scope.covers(r.canonical_path)) {
    return make_error(ErrorCode::kPermission, op, r.server_path, "path outside the token's scope");
  }
  if (write && !scope.write) {
    return make_error(ErrorCode::kPermission, op, r.server_path, "token is read-only");
  }
  return r.server_path;
}

}  // namespace xfer::server
