#include <fcntl.h>
#include <libssh/libssh.h>
#include <libssh/sftp.h>
#include <unistd.h>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <deque>
#include <vector>
static double now() {
  return std::chrono::duration<double>(std::chrono::steady_clock::now().time_since_epoch()).count();
}
int main(int argc, char** argv) {
  const char* mode = argc > 1 ? argv[1] : "both";
  int NREQ = argc > 2 ? atoi(argv[2]) : 32;
  uint32_t CH = (argc > 3 ? atoi(argv[3]) : 64) * 1024;
  uint32_t WCH = (argc > 4 ? atoi(argv[4]) : 64) * 1024;
  ssh_session s = ssh_new();
  int port = getenv("PORT") ? atoi(getenv("PORT")) : 2222, zero = 0;
  ssh_options_set(s, SSH_OPTIONS_HOST, getenv("HOST") ? getenv("HOST") : "127.0.0.1");
  ssh_options_set(s, SSH_OPTIONS_PORT, &port);
  ssh_options_set(s, SSH_OPTIONS_USER, "root");
  ssh_options_set(s, SSH_OPTIONS_STRICTHOSTKEYCHECK, &zero);
  ssh_options_set(s, SSH_OPTIONS_KNOWNHOSTS, "/dev/null");
  int nd = getenv("NODELAY") ? atoi(getenv("NODELAY")) : 1;
  ssh_options_set(s, SSH_OPTIONS_NODELAY, &nd);
  if (getenv("CIPHER")) {
    ssh_options_set(s, SSH_OPTIONS_CIPHERS_C_S, getenv("CIPHER"));
    ssh_options_set(s, SSH_OPTIONS_CIPHERS_S_C, getenv("CIPHER"));
  }
  if (ssh_connect(s) != SSH_OK) {
    fprintf(stderr, "connect: %s\n", ssh_get_error(s));
    return 1;
  }
  ssh_key k;
  if (ssh_pki_import_privkey_file("/tmp/sftp-probe/clientkey", nullptr, nullptr, nullptr, &k) !=
      SSH_OK) {
    fprintf(stderr, "key\n");
    return 1;
  }
  if (ssh_userauth_publickey(s, nullptr, k) != SSH_AUTH_SUCCESS) {
    fprintf(stderr, "auth: %s\n", ssh_get_error(s));
    return 1;
  }
  fprintf(stderr, "libssh %s kex=%s cipher=%s hmac=%s\n", ssh_version(0), ssh_get_kex_algo(s),
          ssh_get_cipher_out(s), ssh_get_hmac_out(s));
  sftp_session sf = sftp_new(s);
  if (!sf || sftp_init(sf) != SSH_OK) {
    fprintf(stderr, "sftp: %s\n", ssh_get_error(s));
    return 1;
  }
  if (strcmp(mode, "up")) {
    sftp_file f = sftp_open(sf, "/tmp/sftp-probe/src.bin", O_RDONLY, 0);
    if (!f) {
      fprintf(stderr, "open r\n");
      return 1;
    }
    int out = open("/tmp/sftp-probe/out-ssh.bin", O_WRONLY | O_CREAT | O_TRUNC, 0644);
    std::vector<char> buf(CH);
    std::deque<std::pair<int, uint64_t>> q;
    uint64_t off = 0, tot = 0;
    bool eof = false;
    double t = now();
    for (int i = 0; i < NREQ; i++) {
      int id = sftp_async_read_begin(f, CH);
      if (id < 0) {
        fprintf(stderr, "begin\n");
        return 1;
      }
      q.push_back({id, off});
      off += CH;
    }
    while (!q.empty()) {
      auto [id, o] = q.front();
      q.pop_front();
      int n = sftp_async_read(f, buf.data(), CH, id);
      if (n < 0) {
        fprintf(stderr, "async_read: %s\n", ssh_get_error(s));
        return 1;
      }
      if (n == 0) {
        eof = true;
        continue;
      }
      if ((uint32_t)n != CH) eof = true;  // short read => end (regular file)
      if (pwrite(out, buf.data(), n, o) != n) {
        perror("pwrite");
        return 1;
      }
      tot += n;
      if (!eof) {
        int nid = sftp_async_read_begin(f, CH);
        if (nid < 0) {
          fprintf(stderr, "begin\n");
          return 1;
        }
        q.push_back({nid, off});
        off += CH;
      }
    }
    double dt = now() - t;
    close(out);
    sftp_close(f);
    printf("libssh  down bytes=%llu sec=%.3f MBps=%.1f (nreq=%d chunk=%u)\n",
           (unsigned long long)tot, dt, tot / dt / 1e6, NREQ, CH);
  }
  if (strcmp(mode, "down")) {
    int in = open("/tmp/sftp-probe/out-ssh.bin", O_RDONLY);
    if (in < 0) {
      perror("open");
      return 1;
    }
    sftp_file f = sftp_open(sf, "/tmp/sftp-probe/up-ssh.bin", O_WRONLY | O_CREAT | O_TRUNC, 0644);
    if (!f) {
      fprintf(stderr, "open w\n");
      return 1;
    }
    std::vector<char> buf(WCH);
    uint64_t tot = 0;
    ssize_t r;
    double t = now();
    while ((r = read(in, buf.data(), WCH)) > 0) {
      ssize_t w = sftp_write(f, buf.data(), r);
      if (w != r) {
        fprintf(stderr, "write %zd: %s\n", w, ssh_get_error(s));
        return 1;
      }
      tot += w;
    }
    sftp_close(f);
    double dt = now() - t;
    close(in);
    printf("libssh  up   bytes=%llu sec=%.3f MBps=%.1f (sync sftp_write chunk=%u)\n",
           (unsigned long long)tot, dt, tot / dt / 1e6, WCH);
  }
  sftp_free(sf);
  ssh_key_free(k);
  ssh_disconnect(s);
  ssh_free(s);
  return 0;
}
