#include <arpa/inet.h>
#include <fcntl.h>
#include <libssh2.h>
#include <libssh2_sftp.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <vector>
static double now() {
  return std::chrono::duration<double>(std::chrono::steady_clock::now().time_since_epoch()).count();
}
#define DIE(m)                                     \
  do {                                             \
    char* e = nullptr;                             \
    libssh2_session_last_error(s, &e, nullptr, 0); \
    fprintf(stderr, "%s: %s\n", m, e ? e : "");    \
    exit(1);                                       \
  } while (0)
int main(int argc, char** argv) {
  const char* mode = argc > 1 ? argv[1] : "both";
  size_t BUF = (argc > 2 ? atoi(argv[2]) : 2048) * 1024;
  const char* D = "/tmp/sftp-probe/";
  libssh2_init(0);
  int fd = socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_port = htons(getenv("PORT") ? atoi(getenv("PORT")) : 2222);
  inet_pton(AF_INET, getenv("HOST") ? getenv("HOST") : "127.0.0.1", &a.sin_addr);
  if (connect(fd, (sockaddr*)&a, sizeof a)) {
    perror("connect");
    return 1;
  }
  LIBSSH2_SESSION* s = libssh2_session_init();
  libssh2_session_set_blocking(s, 1);
  if (libssh2_session_handshake(s, fd)) DIE("handshake");
  if (libssh2_userauth_publickey_fromfile(s, "root", "/tmp/sftp-probe/clientkey.pub",
                                          "/tmp/sftp-probe/clientkey", nullptr))
    DIE("auth");
  fprintf(stderr, "libssh2 %s kex=%s cipher=%s mac=%s\n", libssh2_version(0),
          libssh2_session_methods(s, LIBSSH2_METHOD_KEX),
          libssh2_session_methods(s, LIBSSH2_METHOD_CRYPT_CS),
          libssh2_session_methods(s, LIBSSH2_METHOD_MAC_CS));
  LIBSSH2_SFTP* sf = libssh2_sftp_init(s);
  if (!sf) DIE("sftp_init");
  std::vector<char> buf(BUF);
  if (strcmp(mode, "up")) {  // download
    LIBSSH2_SFTP_HANDLE* h = libssh2_sftp_open(sf, "/tmp/sftp-probe/src.bin", LIBSSH2_FXF_READ, 0);
    if (!h) DIE("open r");
    int out = open("/tmp/sftp-probe/out-ssh2.bin", O_WRONLY | O_CREAT | O_TRUNC, 0644);
    double t = now();
    size_t tot = 0;
    ssize_t n;
    while ((n = libssh2_sftp_read(h, buf.data(), BUF)) > 0) {
      if (write(out, buf.data(), n) != n) {
        perror("write");
        return 1;
      }
      tot += n;
    }
    if (n < 0) DIE("read");
    double dt = now() - t;
    close(out);
    libssh2_sftp_close(h);
    printf("libssh2 down bytes=%zu sec=%.3f MBps=%.1f\n", tot, dt, tot / dt / 1e6);
  }
  if (strcmp(mode, "down")) {  // upload
    int in = open("/tmp/sftp-probe/out-ssh2.bin", O_RDONLY);
    if (in < 0) {
      perror("open");
      return 1;
    }
    LIBSSH2_SFTP_HANDLE* h =
        libssh2_sftp_open(sf, "/tmp/sftp-probe/up-ssh2.bin",
                          LIBSSH2_FXF_WRITE | LIBSSH2_FXF_CREAT | LIBSSH2_FXF_TRUNC, 0644);
    if (!h) DIE("open w");
    double t = now();
    size_t tot = 0;
    ssize_t r;
    while ((r = read(in, buf.data(), BUF)) > 0) {
      char* p = buf.data();
      ssize_t left = r;
      while (left > 0) {
        ssize_t w = libssh2_sftp_write(h, p, left);
        if (w < 0) DIE("write");
        p += w;
        left -= w;
        tot += w;
      }
    }
    libssh2_sftp_close(h);
    double dt = now() - t;
    close(in);
    printf("libssh2 up   bytes=%zu sec=%.3f MBps=%.1f\n", tot, dt, tot / dt / 1e6);
  }
  libssh2_sftp_shutdown(sf);
  libssh2_session_disconnect(s, "bye");
  libssh2_session_free(s);
  close(fd);
  libssh2_exit();
  return 0;
}
