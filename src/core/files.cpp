// Bounded whole-file reads and XDG folders (files.hpp). Pure functions of
// the file system and the environment: any thread.

#include "xfer/core/files.hpp"

#include <fcntl.h>
#include <unistd.h>

#include <cerrno>
#include <cstdlib>

#include <fmt/format.h>

namespace xfer {

Result<std::string> read_small_file(const std::string& path, std::size_t limit) {
  const int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) return errno_error(errno, "read", path);
  struct Close {  // core sits below io's UniqueFd
    int fd;
    ~Close() { ::close(fd); }
  } close_on_return{fd};
  std::string data;
  char buf[8192];
  for (;;) {
    const ssize_t n = ::read(fd, buf, sizeof(buf));
    if (n < 0) {
      if (errno == EINTR) continue;
      return errno_error(errno, "read", path);
    }
    if (n == 0) break;
    data.append(buf, static_cast<std::size_t>(n));
    if (data.size() > limit) {
      return make_error(ErrorCode::kInvalidArgument, "read", path,
                        fmt::format("larger than {} bytes", limit));
    }
  }
  return data;
}

Status write_file_atomically(const std::string& path, std::string_view data) {
  const std::string tmp = path + ".tmp";
  const int fd = ::open(tmp.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
  if (fd < 0) return errno_error(errno, "create", tmp);
  struct Close {
    int fd;
    ~Close() { ::close(fd); }
  } close_on_return{fd};
  for (std::size_t done = 0; done < data.size();) {
    const ssize_t n = ::write(fd, data.data() + done, data.size() - done);
    if (n < 0) {
      if (errno == EINTR) continue;
      return errno_error(errno, "write", tmp);
    }
    done += static_cast<std::size_t>(n);
  }
  if (::fdatasync(fd) != 0) return errno_error(errno, "fsync", tmp);
  if (::rename(tmp.c_str(), path.c_str()) != 0) return errno_error(errno, "rename", tmp);
  return ok_status();
}

namespace {

std::string xdg_home(const char* variable, const char* under_home) {
  if (const char* x = std::getenv(variable); x != nullptr && *x == '/') return x;
  if (const char* home = std::getenv("HOME"); home != nullptr && *home == '/') {
    return std::string(home) + under_home;
  }
  return {};
}

}  // namespace

std::string xdg_config_home() {
  return xdg_home("XDG_CONFIG_HOME", "/.config");
}

std::string xdg_state_home() {
  return xdg_home("XDG_STATE_HOME", "/.local/state");
}

}  // namespace xfer
