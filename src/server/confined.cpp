#include "server/confined.hpp"

#include <sys/stat.h>

#include "xfer/backend/local.hpp"

namespace xfer::server {
namespace {

class ConfinedBackend final : public Backend {
 public:
  explicit ConfinedBackend(std::shared_ptr<const ServerRoot> root)
      : root_(std::move(root)), local_(make_local_backend()) {}

  const Capabilities& capabilities() const override { return local_->capabilities(); }
  std::string describe() const override { return "root " + root_->path(); }

  Result<FileAttrs> stat(std::string_view path) override {
    XFER_ASSIGN_OR_RETURN(auto r, root_->resolve(path));
    return local_->stat(r.local_path);
  }
  Status list(std::string_view path, const ListOptions& options, const EntrySink& sink) override {
    XFER_ASSIGN_OR_RETURN(auto r, resolve_no_link(path, "list"));
    return local_->list(r.local_path, options, sink);
  }
  Status mkdir(std::string_view path, bool parents) override {
    XFER_ASSIGN_OR_RETURN(auto r, root_->resolve(path));
    if (parents) {
      // Create one level at a time so every level is checked by resolve().
      std::string server = r.server_path;
      for (std::size_t pos = 1; pos <= server.size(); ++pos) {
        if (pos != server.size() && server[pos] != '/') continue;
        XFER_ASSIGN_OR_RETURN(auto level, root_->resolve(server.substr(0, pos)));
        Status s = local_->mkdir(level.local_path, false);
        if (!s.ok() && s.error().code != ErrorCode::kExists) return s;
      }
      XFER_ASSIGN_OR_RETURN(FileAttrs a, local_->stat(r.local_path));
      if (a.type != EntryType::kDirectory) {
        return make_error(ErrorCode::kNotDirectory, "mkdir", r.server_path, "not a directory");
      }
      return ok_status();
    }
    return local_->mkdir(r.local_path, false);
  }
  Status remove(std::string_view path, bool recursive) override {
    XFER_ASSIGN_OR_RETURN(auto r, root_->resolve(path));
    if (r.server_path == "/") {
      return make_error(ErrorCode::kPermission, "remove", "/", "refusing to remove the root");
    }
    return local_->remove(r.local_path, recursive);
  }
  Status rename(std::string_view from, std::string_view to) override {
    XFER_ASSIGN_OR_RETURN(auto a, root_->resolve(from));
    XFER_ASSIGN_OR_RETURN(auto b, root_->resolve(to));
    if (a.server_path == "/" || b.server_path == "/") {
      return make_error(ErrorCode::kPermission, "rename", "/", "refusing to rename the root");
    }
    return local_->rename(a.local_path, b.local_path);
  }
  Status touch(std::string_view path, std::optional<std::int64_t> mtime_ns) override {
    XFER_ASSIGN_OR_RETURN(auto r, root_->resolve(path));
    return local_->touch(r.local_path, mtime_ns);
  }
  Status symlink(std::string_view target, std::string_view path, const FileAttrs& attrs) override {
    XFER_ASSIGN_OR_RETURN(auto r, root_->resolve(path));
    return local_->symlink(target, r.local_path, attrs);
  }
  Status set_attrs(std::string_view path, const FileAttrs& attrs) override {
    XFER_ASSIGN_OR_RETURN(auto r, resolve_no_link(path, "set attributes"));
    return local_->set_attrs(r.local_path, attrs);
  }
  Result<std::unique_ptr<Source>> open_source(std::string_view path) override {
    XFER_ASSIGN_OR_RETURN(auto r, resolve_no_link(path, "open"));
    return local_->open_source(r.local_path);
  }
  Result<std::unique_ptr<Sink>> open_sink(std::string_view path,
                                          const SinkOptions& options) override {
    XFER_ASSIGN_OR_RETURN(auto r, root_->resolve(path));
    if (r.server_path == "/") {
      return make_error(ErrorCode::kIsDirectory, "open", "/", "the root is a directory");
    }
    // The local sink publishes with linkat/rename, which replaces a final
    // symlink instead of following it.
    return local_->open_sink(r.local_path, options);
  }

 private:
  Result<ServerRoot::Resolved> resolve_no_link(std::string_view path, std::string_view op) {
    XFER_ASSIGN_OR_RETURN(auto r, root_->resolve(path));
    struct stat st {};
    if (::lstat(r.local_path.c_str(), &st) == 0 && S_ISLNK(st.st_mode)) {
      return make_error(ErrorCode::kPermission, op, r.server_path,
                        "refusing to follow a symlink on the server");
    }
    return r;
  }

  std::shared_ptr<const ServerRoot> root_;
  std::unique_ptr<Backend> local_;
};

}  // namespace

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

std::unique_ptr<Backend> make_confined_backend(std::shared_ptr<const ServerRoot> root) {
  return std::make_unique<ConfinedBackend>(std::move(root));
}

}  // namespace xfer::server
