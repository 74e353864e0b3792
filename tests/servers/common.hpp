#pragma once
// What the servers the tests start (nginx.hpp, sshd.hpp) share: loopback
// ports, and their process (started in a group of its own, stopped by its
// PID). One test thread.

#include <sys/types.h>

#include <functional>
#include <string>
#include <vector>

namespace xfer::testing {

// A port free on 127.0.0.1 now (the kernel's pick; the server binds it
// next), 0 when none could be had.
int free_port();
// Something accepts connections on 127.0.0.1:port.
bool answers(int port);

// Starts argv[0] (an absolute path) with argv in a process group of its
// own; -1 when fork fails.
pid_t spawn(const std::vector<std::string>& argv);
// Polls `ready` for up to 5 s while the process runs: true once it holds;
// false when the process exited (pid becomes -1) or the time ran out.
bool wait_ready(pid_t& pid, const std::function<bool()>& ready);
// SIGTERM, then SIGKILL after 5 s; reaps it; pid becomes -1. Idempotent.
void stop_child(pid_t& pid);

}  // namespace xfer::testing
