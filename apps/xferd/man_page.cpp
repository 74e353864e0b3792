// The prose of xferd's man page: its flags and commands come from the
// parser (cli_doc.cpp), this file adds what they cannot say. Main thread.

#include "man_page.hpp"

namespace xfer::server {

xfer::cli::ManInfo xferd_man_info() {
  xfer::cli::ManInfo info;
  info.program = "xferd";
  info.version = "xferd " XFER_VERSION;
  info.summary = "the xfer server";
  info.description =
      "xferd serves one folder (the root) to xfer clients: a gRPC control channel and TCP data "
      "connections, with bearer tokens scoped to a path prefix, every path resolved inside the "
      "root, and transfers it runs itself (third-party copies between servers). It runs in the "
      "foreground until SIGTERM or SIGINT.\n\n"
      "The configuration file (TOML) names the addresses, the root, the token secret, TLS and "
      "the limits; docs/server.md in the source describes every key and the threat model.";
  info.sections.push_back(
      {"Exit status",
       "0 after a clean shutdown, 1 when the server fails, 2 for a usage or configuration error.",
       {}});
  info.sections.push_back(
      {"Files",
       "",
       {{"/etc/xferd/xferd.toml", "The configuration the packaged systemd unit starts with."},
        {"/usr/lib/systemd/system/xferd.service",
         "The hardened systemd unit (User=xferd; not enabled until configured)."},
        {"/var/lib/xferd", "state_dir: checkpoints of the jobs the server runs."}}});
  info.sections.push_back({"See also", "xfer(1), systemd.exec(5)", {}});
  return info;
}

}  // namespace xfer::server
