// Raw channel throughput with libssh 0.10: exec "cat FILE" and read with a
// count of READ KiB per call (libssh grows the channel's receive window to
// the count asked): does the window, not SFTP, bound one connection?
#include <libssh/libssh.h>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <vector>
static double now() {
  return std::chrono::duration<double>(std::chrono::steady_clock::now().time_since_epoch()).count();
}
int main(int argc, char** argv) {
  size_t R = (argc > 1 ? atoi(argv[1]) : 64) * 1024;
  ssh_session s = ssh_new();
  int port = getenv("PORT") ? atoi(getenv("PORT")) : 2222, zero = 0, nd = 1;
  ssh_options_set(s, SSH_OPTIONS_HOST, getenv("HOST") ? getenv("HOST") : "127.0.0.1");
  ssh_options_set(s, SSH_OPTIONS_PORT, &port);
  ssh_options_set(s, SSH_OPTIONS_USER, "root");
  ssh_options_set(s, SSH_OPTIONS_STRICTHOSTKEYCHECK, &zero);
  ssh_options_set(s, SSH_OPTIONS_KNOWNHOSTS, "/dev/null");
  ssh_options_set(s, SSH_OPTIONS_NODELAY, &nd);
  if (ssh_connect(s) != SSH_OK) {
    fprintf(stderr, "connect: %s\n", ssh_get_error(s));
    return 1;
  }
  ssh_key k;
  if (ssh_pki_import_privkey_file("/tmp/sftp-probe/clientkey", nullptr, nullptr, nullptr, &k) !=
      SSH_OK)
    return 1;
  if (ssh_userauth_publickey(s, nullptr, k) != SSH_AUTH_SUCCESS) return 1;
  ssh_channel c = ssh_channel_new(s);
  if (ssh_channel_open_session(c) != SSH_OK) return 1;
  if (ssh_channel_request_exec(c, "cat /tmp/sftp-probe/src.bin") != SSH_OK) return 1;
  std::vector<char> buf(R);
  size_t tot = 0;
  double t = now();
  for (;;) {
    int n = ssh_channel_read(c, buf.data(), R, 0);
    if (n <= 0) break;
    tot += n;
  }
  double d = now() - t;
  printf("raw read=%zuK bytes=%zu sec=%.3f MBps=%.1f\n", R / 1024, tot, d, tot / d / 1e6);
  ssh_channel_close(c);
  ssh_channel_free(c);
  ssh_disconnect(s);
  ssh_free(s);
  return 0;
}
