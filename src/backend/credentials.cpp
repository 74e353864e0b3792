// The credentials file: named remotes and endpoint tokens (credentials.hpp).
// CredentialStore is a plain value, used by one thread at a time;
// Credentials guards its lazily loaded store and passphrase with a mutex.

#include "xfer/backend/credentials.hpp"

#include <fcntl.h>
#include <fmt/format.h>
#include <sys/stat.h>
#include <unistd.h>

#include <toml++/toml.h>
#include <algorithm>
#include <array>
#include <cerrno>
#include <cstdlib>
#include <filesystem>
#include <sstream>

#include "xfer/core/files.hpp"
#include "xfer/core/names.hpp"

namespace xfer {
namespace {

// A credentials file is a few remotes; anything this large is not one.
constexpr std::size_t kMaxCredentialsBytes = 1 << 20;

using Keys = std::span<const std::string_view>;

constexpr std::array<std::string_view, 5> kXferKeys = {"host", "port", "token", "tls", "tls_ca"};
constexpr std::array<std::string_view, 1> kXferSecrets = {"token"};
constexpr std::array<std::string_view, 1> kHostRequired = {"host"};
constexpr std::array<std::string_view, 7> kSftpKeys = {
    "host", "port", "user", "key_file", "password", "key_passphrase", "known_hosts"};
constexpr std::array<std::string_view, 2> kSftpSecrets = {"password", "key_passphrase"};
constexpr std::array<std::string_view, 8> kS3Keys = {
    "endpoint",      "region",     "access_key_id",     "secret_access_key",
    "session_token", "path_style", "directory_markers", "copy_cutoff"};
constexpr std::array<std::string_view, 2> kS3Secrets = {"secret_access_key", "session_token"};
constexpr std::array<std::string_view, 6> kAzureKeys = {
    "account", "key", "sas_token", "endpoint", "connection_string", "directory_markers"};
constexpr std::array<std::string_view, 3> kAzureSecrets = {"key", "sas_token", "connection_string"};
constexpr std::array<std::string_view, 5> kHttpKeys = {"url", "user", "password", "bearer_token",
                                                       "ca"};
constexpr std::array<std::string_view, 2> kHttpSecrets = {"password", "bearer_token"};
constexpr std::array<std::string_view, 1> kHttpRequired = {"url"};

constexpr std::array kTypes = {
    RemoteType{"xfer", kXferKeys, kXferSecrets, kHostRequired,
               "an xferd server: host, port (7400), token, tls, tls_ca"},
    RemoteType{"sftp", kSftpKeys, kSftpSecrets, kHostRequired,
               "an SSH server: host, port, user, key_file, password, key_passphrase, known_hosts"},
    RemoteType{"s3",
               kS3Keys,
               kS3Secrets,
               {},
               "S3 or compatible: endpoint, region, access_key_id, secret_access_key, "
               "session_token, path_style, directory_markers, copy_cutoff"},
    RemoteType{"gs",
               kS3Keys,
               kS3Secrets,
               {},
               "Google Cloud Storage through its XML API with HMAC keys: access_key_id, "
               "secret_access_key, endpoint, region, path_style, directory_markers, copy_cutoff"},
    RemoteType{
        "azure",
        kAzureKeys,
        kAzureSecrets,
        {},
        "Azure Blob: account, key, sas_token, endpoint, connection_string, directory_markers"},
    RemoteType{"http", kHttpKeys, kHttpSecrets, kHttpRequired,
               "an HTTP(S) server: url, user, password, bearer_token, ca"},
};

bool contains(Keys keys, std::string_view k) {
  return std::find(keys.begin(), keys.end(), k) != keys.end();
}

Error malformed(const std::string& path, const toml::node& n, std::string_view why) {
  return make_error(ErrorCode::kInvalidArgument, "read credentials", path,
                    fmt::format("line {}: {}", n.source().begin.line, why));
}

// ssh's rule: a file holding secrets is ours and nobody else's to read.
Status check_private(int fd, const std::string& path) {
  struct stat st {};
  if (::fstat(fd, &st) != 0) return errno_error(errno, "stat", path);
  if ((st.st_mode & 077) != 0) {
    return make_error(ErrorCode::kPermission, "read credentials", path,
                      fmt::format("others may read it (mode {:04o}); run: chmod 600 {}",
                                  st.st_mode & 07777, path));
  }
  if (st.st_uid != ::geteuid()) {
    return make_error(ErrorCode::kPermission, "read credentials", path,
                      "it belongs to another user");
  }
  return ok_status();
}

}  // namespace

std::span<const RemoteType> remote_types() {
  return kTypes;
}

const RemoteType* find_remote_type(std::string_view type) {
  for (const auto& t : kTypes) {
    if (t.type == type) return &t;
  }
  return nullptr;
}

bool is_secret_key(std::string_view type, std::string_view key) {
  const RemoteType* t = find_remote_type(type);
  return t != nullptr && contains(t->secrets, key);
}

Status validate_remote_name(std::string_view name) {
  auto bad = [&](std::string_view why) {
    return make_error(ErrorCode::kInvalidArgument, "remote", printable_name(name, 80),
                      fmt::format("invalid remote name: {}", why));
  };
  if (name.empty() || name.size() > 64) return bad("1 to 64 characters");
  if (!std::isalpha(static_cast<unsigned char>(name[0]))) return bad("must start with a letter");
  for (char c : name) {
    if (!std::isalnum(static_cast<unsigned char>(c)) && c != '-' && c != '_') {
      return bad("letters, digits, '-' and '_' only");
    }
  }
  if (name == "file" || find_remote_type(name) != nullptr || name == "https" || name == "xferd") {
    return bad("that is the name of a URL scheme");
  }
  return ok_status();
}

Status validate_remote(const RemoteSpec& spec) {
  XFER_TRY(validate_remote_name(spec.name));
  const RemoteType* type = find_remote_type(spec.type);
  if (type == nullptr) {
    std::string known;
    for (const auto& t : kTypes) known += (known.empty() ? "" : ", ") + std::string(t.type);
    return make_error(
        ErrorCode::kInvalidArgument, "remote", spec.name,
        fmt::format("unknown type \"{}\" (known: {})", printable_name(spec.type, 40), known));
  }
  for (const auto& [key, value] : spec.fields) {
    if (!contains(type->keys, key)) {
      return make_error(ErrorCode::kInvalidArgument, "remote", spec.name,
                        fmt::format("a {} remote has no key \"{}\" ({})", spec.type,
                                    printable_name(key, 40), type->help));
    }
    if (value.size() > 16384 || value.find('\0') != std::string::npos) {
      return make_error(ErrorCode::kInvalidArgument, "remote", spec.name,
                        fmt::format("value of {} too long or not text", key));
    }
  }
  for (auto key : type->required) {
    if (spec.fields.count(std::string(key)) == 0) {
      return make_error(ErrorCode::kInvalidArgument, "remote", spec.name,
                        fmt::format("a {} remote needs {}=...", spec.type, key));
    }
  }
  return ok_status();
}

std::string CredentialStore::default_path() {
  if (const char* p = std::getenv("XFER_CREDENTIALS"); p != nullptr && *p != '\0') return p;
  const std::string home = xdg_config_home();
  return home.empty() ? std::string() : home + "/xfer/credentials.toml";
}

Result<CredentialStore> CredentialStore::load(const std::string& path) {
  CredentialStore store;
  store.path_ = path;
  if (path.empty()) return store;
  const int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
  if (fd < 0) {
    if (errno == ENOENT) return store;
    return errno_error(errno == ELOOP ? EPERM : errno, "read credentials", path);
  }
  Status priv = check_private(fd, path);
  ::close(fd);
  XFER_TRY(priv);
  XFER_ASSIGN_OR_RETURN(std::string text, read_small_file(path, kMaxCredentialsBytes));
  return parse(text, path);
}

Result<CredentialStore> CredentialStore::parse(std::string_view text, const std::string& path) {
  CredentialStore store;
  store.path_ = path;
  toml::table root;
  try {
    root = toml::parse(text, path);
  } catch (const toml::parse_error& e) {
    return make_error(ErrorCode::kInvalidArgument, "read credentials", path,
                      fmt::format("line {}: {}", e.source().begin.line, e.description()));
  }
  for (const auto& [key, node] : root) {
    const toml::table* t = node.as_table();
    if (t == nullptr) return malformed(path, node, fmt::format("{} must be a table", key.str()));
    if (key.str() == "remotes") {
      for (const auto& [name, rnode] : *t) {
        const toml::table* rt = rnode.as_table();
        if (rt == nullptr) return malformed(path, rnode, "a remote must be a table");
        RemoteSpec spec;
        spec.name = std::string(name.str());
        for (const auto& [field, value] : *rt) {
          auto s = value.value_exact<std::string>();
          if (!s) return malformed(path, value, fmt::format("{} must be a string", field.str()));
          if (field.str() == "type") {
            spec.type = *s;
          } else {
            spec.fields[std::string(field.str())] = *s;
          }
        }
        if (Status v = validate_remote(spec); !v.ok()) {
          return malformed(path, rnode, v.error().detail);
        }
        store.remotes_.push_back(std::move(spec));
      }
      continue;
    }
    // ["host:port"] token = "..." : the token of one xfer:// endpoint.
    if (const toml::node* tok = t->get("token")) {
      auto s = tok->value_exact<std::string>();
      if (!s) return malformed(path, *tok, "token must be a string");
      store.endpoint_tokens_[std::string(key.str())] = *s;
    }
  }
  return store;
}

std::string CredentialStore::to_text() const {
  toml::table root;
  toml::table remotes;
  for (const auto& r : remotes_) {
    toml::table t;
    t.insert("type", r.type);
    for (const auto& [k, v] : r.fields) t.insert(k, v);
    remotes.insert(r.name, std::move(t));
  }
  if (!remotes.empty()) root.insert("remotes", std::move(remotes));
  for (const auto& [endpoint, token] : endpoint_tokens_) {
    toml::table t;
    t.insert("token", token);
    root.insert(endpoint, std::move(t));
  }
  std::ostringstream out;
  out << "# xfer credentials: remotes (xfer remote add) and tokens. Keep it mode 0600.\n"
      << root << "\n";
  return out.str();
}

Status CredentialStore::save() const {
  if (path_.empty()) {
    return make_error(ErrorCode::kInvalidArgument, "write credentials", "",
                      "no home folder: set XFER_CREDENTIALS");
  }
  // The folder is private too (0700) when we make it; an existing one is
  // left as the user has it.
  const auto slash = path_.find_last_of('/');
  if (slash != std::string::npos && slash > 0) {
    const std::string dir = path_.substr(0, slash);
    std::error_code ec;
    std::filesystem::create_directories(std::filesystem::path(dir).parent_path(), ec);
    if (::mkdir(dir.c_str(), 0700) != 0 && errno != EEXIST) {
      return errno_error(errno, "mkdir", dir);
    }
  }
  return write_file_atomically(path_, to_text());
}

const RemoteSpec* CredentialStore::remote(std::string_view name) const {
  for (const auto& r : remotes_) {
    if (r.name == name) return &r;
  }
  return nullptr;
}

Status CredentialStore::put_remote(RemoteSpec spec) {
  XFER_TRY(validate_remote(spec));
  for (auto& r : remotes_) {
    if (r.name == spec.name) {
      r = std::move(spec);
      return ok_status();
    }
  }
  remotes_.push_back(std::move(spec));
  return ok_status();
}

bool CredentialStore::remove_remote(std::string_view name) {
  auto it = std::find_if(remotes_.begin(), remotes_.end(),
                         [&](const RemoteSpec& r) { return r.name == name; });
  if (it == remotes_.end()) return false;
  remotes_.erase(it);
  return true;
}

std::optional<std::string> CredentialStore::endpoint_token(std::string_view host_port) const {
  auto it = endpoint_tokens_.find(std::string(host_port));
  if (it == endpoint_tokens_.end()) return std::nullopt;
  return it->second;
}

template <typename Fn>
Status CredentialStore::for_each_secret(Fn&& fn) {
  for (auto& r : remotes_) {
    for (auto& [key, value] : r.fields) {
      if (is_secret_key(r.type, key)) XFER_TRY(fn(value));
    }
  }
  for (auto& [endpoint, token] : endpoint_tokens_) XFER_TRY(fn(token));
  return ok_status();
}

bool CredentialStore::any_sealed() const {
  bool found = false;
  (void)const_cast<CredentialStore*>(this)->for_each_secret([&](std::string& v) {
    found |= is_sealed(v);
    return ok_status();
  });
  return found;
}

bool CredentialStore::any_plain_secret() const {
  bool found = false;
  (void)const_cast<CredentialStore*>(this)->for_each_secret([&](std::string& v) {
    found |= !is_sealed(v);
    return ok_status();
  });
  return found;
}

Status CredentialStore::seal_all(std::string_view passphrase, SealCost cost) {
  CredentialStore copy = *this;  // all or nothing
  XFER_TRY(copy.for_each_secret([&](std::string& v) -> Status {
    if (is_sealed(v)) return ok_status();
    XFER_ASSIGN_OR_RETURN(v, seal_secret(v, passphrase, cost));
    return ok_status();
  }));
  *this = std::move(copy);
  return ok_status();
}

Status CredentialStore::unseal_all(std::string_view passphrase) {
  CredentialStore copy = *this;
  XFER_TRY(copy.for_each_secret([&](std::string& v) -> Status {
    if (!is_sealed(v)) return ok_status();
    XFER_ASSIGN_OR_RETURN(v, unseal_secret(v, passphrase));
    return ok_status();
  }));
  *this = std::move(copy);
  return ok_status();
}

Credentials::Credentials(std::string path, PassphraseSource passphrase)
    : path_(std::move(path)),
      passphrase_source_(std::move(passphrase)),
      store_(make_error(ErrorCode::kInternal, "credentials", "", "not loaded")) {}

Result<std::shared_ptr<const CredentialStore>> Credentials::store() const {
  std::lock_guard lock(mu_);
  if (!loaded_) {
    auto s = CredentialStore::load(path_);
    if (s) {
      store_ = std::shared_ptr<const CredentialStore>(
          std::make_shared<CredentialStore>(std::move(s).value()));
    } else {
      store_ = std::move(s).error();
    }
    loaded_ = true;
  }
  return store_;
}

Result<std::string> Credentials::reveal(const std::string& value) const {
  if (!is_sealed(value)) return value;
  std::lock_guard lock(mu_);
  if (!passphrase_) {
    XFER_ASSIGN_OR_RETURN(std::string p, passphrase_from(passphrase_source_));
    auto opened = unseal_secret(value, p);
    if (!opened) return opened;
    passphrase_ = std::move(p);  // asked once per process
    return opened;
  }
  return unseal_secret(value, *passphrase_);
}

}  // namespace xfer
