#pragma once
// xferd's TOML configuration (docs/server.md has an annotated example).
//
//   [server]
//   listen = "127.0.0.1:7400"        # gRPC control channel (host:port, [v6]:port)
//   data_listen = "127.0.0.1:0"      # TCP data channel; port 0 = any free port
//   root = "/srv/xfer"               # the one folder served
//   state_dir = "/var/lib/xferd"     # server-run jobs' checkpoints
//   [tls]                            # control-channel TLS; both or neither
//   cert = "/etc/xferd/cert.pem"
//   key = "/etc/xferd/key.pem"
//   [auth]
//   secret = "..."                   # HS256 secret (or secret_file = "...")
//   required = true                  # false: no token needed (loopback testing)
//   [limits]
//   max_sessions = 256
//   max_streams_per_session = 16
//   session_idle_seconds = 600
//   max_jobs = 8
//   [data]
//   encrypt = "auto"                 # "auto" (sealed unless loopback), "always", "never"

#include <cstdint>
#include <string>

#include "xfer/core/result.hpp"

namespace xfer::server {

enum class EncryptPolicy { kAuto, kAlways, kNever };

struct ServerConfig {
  std::string listen = "127.0.0.1:7400";
  std::string data_listen = "127.0.0.1:0";
  std::string root;
  std::string state_dir;
  std::string tls_cert;
  std::string tls_key;
  std::string secret;
  bool auth_required = true;
  unsigned max_sessions = 256;
  unsigned max_streams_per_session = 16;
  unsigned session_idle_seconds = 600;
  unsigned max_jobs = 8;
  EncryptPolicy encrypt = EncryptPolicy::kAuto;
};

// Reads and validates the file (unknown keys are an error naming the key;
// root must exist; auth.required without a secret is an error; a
// secret_file is read and trimmed). Errors are kInvalidArgument with the
// file name and the offending key in the message.
Result<ServerConfig> load_server_config(const std::string& path);
// Same, from TOML text (tests).
Result<ServerConfig> parse_server_config(std::string_view toml_text, const std::string& origin);

}  // namespace xfer::server
