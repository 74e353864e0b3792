#pragma once
// Bringing a lab up and down, running commands in its hosts, and talking to
// its emulator. A lab named N is: network namespaces "xnl-N-<host>" and
// "xnl-N-sw" (the emulator's), a state folder <state root>/N holding the
// topology, the hosts' addresses, the emulator's PID, log and control
// socket, and the emulator process itself. Everything carries the prefix, so
// `netlab down --all` finds what a crashed run left behind.
//
// Threading: called from the CLI's one thread; emulate_main() owns the
// emulator process (its main thread serves the control socket).

#include <string>
#include <vector>

#include "topology.hpp"
#include "xfer/core/result.hpp"

namespace netlab {

// /run/netlab, or $NETLAB_STATE_DIR.
std::string state_root();
std::string state_dir(const std::string& lab);

// Labs with a state folder (up, or left behind).
std::vector<std::string> labs();

// The lab a command means: `explicit_name`, else $NETLAB_LAB, else the only
// one up. An error names the labs when it is ambiguous.
xfer::Result<std::string> pick_lab(const std::string& explicit_name);

// Creates namespaces, veth pairs, addresses, routes and sysctls, starts the
// emulator (`self_exe emulate`) and waits until it answers. A failure
// removes whatever it had made.
xfer::Status lab_up(const Topology& topology, const std::string& topology_text,
                    const std::string& self_exe);
// Stops the emulator, the processes left in the lab's namespaces, removes
// the namespaces and the state folder. Missing parts are not an error.
xfer::Status lab_down(const std::string& lab);
// lab_down for every lab, then any namespace named xnl-* left over.
xfer::Status lab_down_all();

// Runs argv inside the host's namespace (replaces this process; returns
// only on error).
xfer::Status lab_exec(const std::string& lab, const std::string& host,
                      const std::vector<std::string>& argv);

// One request on the emulator's control socket ("set …", "stats", "ping");
// the reply's payload, or its error.
xfer::Result<std::string> control_request(const std::string& lab, const std::string& line);

// The hosts and their addresses, as JSON text (written at `up`).
xfer::Result<std::string> hosts_json(const std::string& lab);

// The emulator process: `netlab emulate --state DIR`, started by lab_up in
// the switch namespace. Returns the process's exit status.
int emulate_main(const std::string& dir);

}  // namespace netlab
