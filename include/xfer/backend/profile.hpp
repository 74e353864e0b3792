#pragma once
// One typed profile per endpoint: everything a backend needs to reach it
// beyond the URL (host, port, user, keys, tokens, region...), gathered from,
// in order of precedence:
//
//   1. the command line (--token) and the URL (user@, :port, ?key=value),
//   2. the named remote of "NAME:path" (credentials.toml),
//   3. the conventional places, so a user needs no xfer config at all:
//      xfer   $XFER_TOKEN, then the ["host:port"] token of credentials.toml
//      sftp   ~/.ssh/config (HostName, User, Port, IdentityFile), ssh-agent
//             ($SSH_AUTH_SOCK)
//      s3     $AWS_ACCESS_KEY_ID, $AWS_SECRET_ACCESS_KEY, $AWS_SESSION_TOKEN,
//             $AWS_REGION / $AWS_DEFAULT_REGION, $AWS_ENDPOINT_URL, then
//             ~/.aws/credentials and ~/.aws/config ($AWS_PROFILE or default)
//      azure  $AZURE_STORAGE_ACCOUNT, $AZURE_STORAGE_KEY,
//             $AZURE_STORAGE_SAS_TOKEN, $AZURE_STORAGE_CONNECTION_STRING
//
// Secrets come out opened (unsealed). Pure apart from reading those files
// and variables; any thread.

#include <map>
#include <string>
#include <string_view>

#include "xfer/backend/credentials.hpp"
#include "xfer/core/result.hpp"
#include "xfer/core/url.hpp"

namespace xfer {

struct Profile {
  std::string type;    // the backend: "file", "xfer", "sftp", "s3", "azure", "http"
  std::string remote;  // the remote it came from, "" for none
  std::map<std::string, std::string> fields;
  // Where each field came from ("remote lab", "$AWS_REGION", "~/.ssh/config"),
  // for `xfer remote show` and error messages.
  std::map<std::string, std::string> origins;

  std::string get(std::string_view key, std::string_view fallback = "") const;
  bool has(std::string_view key) const { return fields.count(std::string(key)) != 0; }
};

// Where the conventional places are; tests point them elsewhere.
struct ProfileEnvironment {
  std::string home;     // for ~/.ssh and ~/.aws; "" from $HOME
  bool ambient = true;  // false: only the URL, the remote and `explicit_token`
};

// "NAME:path" when NAME is a remote of `store`: the URL it stands for
// (scheme, host and port from the remote, `remote` set). nullopt when the
// text is not of that form or names no remote (a local path, then).
std::optional<Url> expand_remote(std::string_view text, const CredentialStore& store);

// The profile of `url`. `credentials` may be null (no credentials file);
// `explicit_token` is --token. kInvalidArgument for a query key the type
// does not take, or a secret given in a URL (it would end up in logs and
// job records: keep it in credentials.toml).
Result<Profile> resolve_profile(const Url& url, const Credentials* credentials,
                                const std::string& explicit_token,
                                const ProfileEnvironment& env = {});

// ~/.ssh/config for `host`: the first value of each of HostName, User, Port
// and IdentityFile over the Host blocks that match (ssh's rule), as
// host, user, port, key_file. Exposed for tests.
std::map<std::string, std::string> ssh_config_for(std::string_view config_text,
                                                  std::string_view host);
// One [section] of an INI file (~/.aws/credentials) as key -> value.
std::map<std::string, std::string> ini_section(std::string_view text, std::string_view section);

}  // namespace xfer
