#pragma once
// xferd's TOML configuration (docs/server.md has an annotated example).
//
//   [server]
//   listen = "127.0.0.1:7400"        # gRPC control channel (host:port, [v6]:port)
//   data_listen = "127.0.0.1:0"      # TCP data channel; port 0 = any free port;
//                                    # or a list, one per NIC: ["10.0.1.2:7401", "10.0.2.2:7401"]
//   root = "/srv/xfer"               # the one folder served
//   state_dir = "/var/lib/xferd"     # server-run jobs' checkpoints
//   user = "xferd"                   # drop to this user after binding (when root)
//   allow_special_bits = false       # keep setuid/setgid/sticky bits clients send
//   [tls]                            # control-channel TLS; both or neither
//   cert = "/etc/xferd/cert.pem"
//   key = "/etc/xferd/key.pem"
//   [auth]
//   secret = "..."                   # HS256 secret (or secret_file = "...")
//   required = true                  # false: no token needed (loopback testing)
//   [limits]                         # every key and default: kLimitKeys below
//   [jobs]
//   peers = ["b.example:7400"]       # xferd servers jobs may send to (default: none)
//   tls_ca = "/etc/xferd/peers.pem"  # TLS to those peers' control channel
//   [data]
//   encrypt = "auto"                 # "auto" (sealed unless loopback), "always", "never"

#include <cstdint>
#include <string>
#include <vector>

#include "xfer/core/result.hpp"
#include "xfer/core/url.hpp"

namespace xfer::server {

enum class EncryptPolicy { kAuto, kAlways, kNever };

// Data addresses one server may listen on and advertise; a client takes no
// more than this many from a server either.
inline constexpr std::size_t kMaxDataListeners = 16;

struct ServerConfig {
  std::string listen = "127.0.0.1:" + std::to_string(kDefaultXferPort);
  // Data listeners, each advertised to clients as a path (at most
  // kMaxDataListeners).
  std::vector<std::string> data_listen = {"127.0.0.1:0"};
  std::string root;
  std::string state_dir;
  std::string tls_cert;
  std::string tls_key;
  std::string secret;
  bool auth_required = true;
  std::string user;                 // drop privileges to this user after binding
  bool allow_special_bits = false;  // setuid/setgid/sticky on client files

  // [limits]: every resource a peer can make xferd hold (docs/server.md,
  // "Threat model"). Defaults and ranges are in kLimitKeys.
  unsigned max_sessions = 256;                 // data sessions, in total
  unsigned max_sessions_per_subject = 16;      // data sessions of one token subject
  unsigned max_streams_per_session = 16;       // data connections granted per session
  unsigned max_handles_per_session = 256;      // files open at once in one session
  unsigned max_open_files_per_subject = 1024;  // files open in all of a subject's sessions
  unsigned session_idle_seconds = 600;         // a session without connections is closed
  unsigned max_connections = 1024;             // data connections, in total
  unsigned max_connections_per_address = 128;
  unsigned max_unauthenticated = 64;  // data connections still in their handshake
  unsigned max_unauthenticated_per_address = 16;
  unsigned handshake_seconds = 5;                    // the whole handshake, from accept to HelloOk
  unsigned connection_buffer_kib = 4096;             // largest buffered frame per connection
  unsigned socket_buffer_kib = 16384;                // kernel socket buffers per data connection
  unsigned max_jobs = 8;                             // server-run jobs running at once, in total
  unsigned max_jobs_per_subject = 2;                 // running jobs of one token subject
  unsigned max_watches = 32;                         // WatchJob streams open at once
  unsigned max_watches_per_subject = 4;              // WatchJob streams of one subject
  unsigned max_checksums = 16;                       // Checksum calls hashing at once, in total
  unsigned max_change_watches = 8;                   // WatchChanges streams open at once
  unsigned max_change_watches_per_subject = 2;       // WatchChanges streams of one subject
  unsigned max_watched_folders = 20000;              // inotify watches of one WatchChanges stream
  unsigned max_watched_folders_total = 60000;        // inotify watches of all WatchChanges streams
  unsigned max_checksums_per_subject = 4;            // Checksum calls of one subject at once
  unsigned job_retention_seconds = 3600;             // a finished job is forgotten after this
  unsigned max_finished_jobs = 256;                  // finished jobs kept at most (oldest go first)
  unsigned max_grpc_connections_idle_seconds = 300;  // an idle control connection is closed
  unsigned log_refusals_per_minute = 60;             // audit lines for refused requests

  EncryptPolicy encrypt = EncryptPolicy::kAuto;

  // [jobs]
  std::vector<std::string> job_peers;  // "host:port" of xferd servers jobs may send to
  std::string job_tls_ca;              // PEM bundle: TLS to the peers' control channel
};

// One [limits] key: its name, range and the member it sets. The config
// reader, the documentation test and docs/server.md follow this table.
struct LimitKey {
  const char* name;
  unsigned ServerConfig::*member;
  unsigned lo;
  unsigned hi;
  const char* help;
};
extern const LimitKey kLimitKeys[];
extern const std::size_t kLimitKeyCount;

// Secrets shorter than this are refused (HS256 keys need 256 bits).
inline constexpr std::size_t kMinSecretBytes = 32;

// Reads and validates the file (unknown keys are an error naming the key;
// root must exist; auth.required without a secret is an error; a
// secret_file is read and trimmed). Errors are kInvalidArgument with the
// file name and the offending key in the message.
Result<ServerConfig> load_server_config(const std::string& path);
// Same, from TOML text (tests).
Result<ServerConfig> parse_server_config(std::string_view toml_text, const std::string& origin);

}  // namespace xfer::server
