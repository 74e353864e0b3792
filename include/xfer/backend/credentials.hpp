#pragma once
// Named remotes and the secrets to reach them, in the rclone way:
// ~/.config/xfer/credentials.toml (or $XFER_CREDENTIALS), created 0600 and
// refused when a group or others may read it or it is not ours (as ssh
// refuses such keys):
//
//   [remotes.lab]                   # xfer remote add lab xfer host=... token=...
//   type = "xfer"
//   host = "10.0.0.2"
//   port = "7400"
//   token = "$xfer-sealed$v1$..."   # sealed with a passphrase (secrets.hpp)
//
//   ["10.0.0.2:7400"]               # the token of xfer://10.0.0.2:7400/...
//   token = "..."
//
// Every value is a string. Which keys a type takes, and which of them are
// secrets, is the table of remote_types(). A CredentialStore is a value
// (load, change, save); Credentials shares one, loaded on first use, between
// threads.

#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "xfer/core/result.hpp"
#include "xfer/core/secrets.hpp"

namespace xfer {

// The keys a remote of one type may carry.
struct RemoteType {
  std::string_view type;  // the URL scheme it stands for
  std::span<const std::string_view> keys;
  std::span<const std::string_view> secrets;   // of `keys`: sealed by `xfer credentials seal`
  std::span<const std::string_view> required;  // of `keys`
  std::string_view help;
};
std::span<const RemoteType> remote_types();
const RemoteType* find_remote_type(std::string_view type);
bool is_secret_key(std::string_view type, std::string_view key);

struct RemoteSpec {
  std::string name;
  std::string type;
  std::map<std::string, std::string> fields;  // as stored: secrets may be sealed
};

// A remote's name: 1..64 of [A-Za-z0-9_-], starting with a letter, and not
// a scheme xfer knows ("file", "xfer", ...): "NAME:path" must never be
// mistaken for anything else.
Status validate_remote_name(std::string_view name);
// A remote's type, keys and required keys, as add_remote checks them.
Status validate_remote(const RemoteSpec& spec);

class CredentialStore {
 public:
  // $XFER_CREDENTIALS, else $XDG_CONFIG_HOME/xfer/credentials.toml ("" when
  // there is no home).
  static std::string default_path();
  // A missing file is an empty store. kPermission when others may read it or
  // it is not ours; kInvalidArgument (naming the line) when it is malformed.
  static Result<CredentialStore> load(const std::string& path);
  // The file's text (TOML) into a store; `path` names it in errors and is
  // where save() writes. load() is this after the permission check.
  static Result<CredentialStore> parse(std::string_view text, const std::string& path);
  std::string to_text() const;
  // Atomically, mode 0600; the folder is created 0700.
  Status save() const;
  const std::string& path() const { return path_; }

  const std::vector<RemoteSpec>& remotes() const { return remotes_; }
  const RemoteSpec* remote(std::string_view name) const;
  // Adds or replaces; checked by validate_remote.
  Status put_remote(RemoteSpec spec);
  bool remove_remote(std::string_view name);

  // The token stored for xfer://host:port (the ["host:port"] tables).
  std::optional<std::string> endpoint_token(std::string_view host_port) const;

  bool any_sealed() const;
  bool any_plain_secret() const;
  // Seals every plaintext secret with `passphrase` (sealed ones stay).
  Status seal_all(std::string_view passphrase, SealCost cost = {});
  // Opens every sealed secret; kPermission on a wrong passphrase (nothing
  // changed then).
  Status unseal_all(std::string_view passphrase);

 private:
  template <typename Fn>
  Status for_each_secret(Fn&& fn);
  std::string path_;
  std::vector<RemoteSpec> remotes_;
  std::map<std::string, std::string> endpoint_tokens_;
};

// One store for a process, loaded on first use; secrets opened with a
// passphrase asked for once. Thread-safe.
class Credentials {
 public:
  explicit Credentials(std::string path, PassphraseSource passphrase = {});
  // The same result every time (a broken file stays an error).
  Result<std::shared_ptr<const CredentialStore>> store() const;
  // `value` itself, or opened when sealed.
  Result<std::string> reveal(const std::string& value) const;
  const std::string& path() const { return path_; }

 private:
  std::string path_;
  PassphraseSource passphrase_source_;
  mutable std::mutex mu_;
  mutable bool loaded_ = false;
  mutable Result<std::shared_ptr<const CredentialStore>> store_;
  mutable std::optional<std::string> passphrase_;
};

}  // namespace xfer
