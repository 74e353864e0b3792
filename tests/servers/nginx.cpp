// The tests' nginx (nginx.hpp): config, certificates, process. One test
// thread.

#include "nginx.hpp"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <cstdlib>
#include <fstream>
#include <sstream>
#include <thread>

#include "common.hpp"

namespace xfer::testing {
namespace {

namespace fs = std::filesystem;
using namespace std::chrono_literals;

std::string nginx_binary() {
  for (const char* p : {"/usr/sbin/nginx", "/usr/bin/nginx"}) {
    if (::access(p, X_OK) == 0) return p;
  }
  return "";
}

}  // namespace

NginxServer::NginxServer(fs::path dir) : dir_(std::move(dir)), root_(dir_ / "root") {
  fs::create_directories(root_);
  fs::create_directories(dir_ / "tmp");
}

NginxServer::~NginxServer() {
  stop();
}

std::string NginxServer::http_url(std::string_view path) const {
  return "http://127.0.0.1:" + std::to_string(http_port_) + std::string(path);
}
std::string NginxServer::json_url(std::string_view path) const {
  return "http://127.0.0.1:" + std::to_string(json_port_) + std::string(path);
}
std::string NginxServer::https_url(std::string_view path) const {
  return "https://127.0.0.1:" + std::to_string(https_port_) + std::string(path);
}

std::string NginxServer::log() const {
  std::ifstream f(dir_ / "error.log");
  std::stringstream s;
  s << f.rdbuf();
  return s.str();
}

bool NginxServer::make_tls() {
  const fs::path tls = dir_ / "tls";
  if (fs::exists(tls / "server.pem")) return true;
  fs::create_directories(tls);
  const std::string d = tls.string();
  // A CA, and a certificate for 127.0.0.1 and localhost signed by it.
  const std::string script =
      "set -e; cd '" + d +
      "'; "
      "openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -days 2 "
      "-subj '/CN=xfer test CA' -keyout ca.key -out ca.pem 2>/dev/null; "
      "openssl req -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes "
      "-subj '/CN=127.0.0.1' -keyout server.key -out server.csr 2>/dev/null; "
      "printf 'subjectAltName=IP:127.0.0.1,DNS:localhost\\n' > ext.cnf; "
      "openssl x509 -req -in server.csr -CA ca.pem -CAkey ca.key -CAcreateserial -days 2 "
      "-extfile ext.cnf -out server.pem 2>/dev/null";
  if (std::system(("bash -c \"" + script + "\"").c_str()) != 0) {
    error_ = "openssl could not make the test certificates";
    return false;
  }
  return true;
}

void NginxServer::write_config() const {
  const std::string d = dir_.string();
  const std::string r = root_.string();
  std::ofstream f(dir_ / "nginx.conf");
  f << "daemon off;\nmaster_process off;\nworker_processes 1;\n"
    << "pid " << d << "/nginx.pid;\nerror_log " << d << "/error.log warn;\n"
    << "events { worker_connections 1024; }\n"
    << "http {\n  access_log off;\n  include /etc/nginx/mime.types;\n"
    << "  default_type application/octet-stream;\n  sendfile on;\n"
    << "  keepalive_requests 100000;\n"
    << "  client_body_temp_path " << d << "/tmp/body;\n"
    << "  proxy_temp_path " << d << "/tmp/proxy;\n"
    << "  fastcgi_temp_path " << d << "/tmp/fastcgi;\n"
    << "  uwsgi_temp_path " << d << "/tmp/uwsgi;\n"
    << "  scgi_temp_path " << d << "/tmp/scgi;\n"
    << "  server { listen 127.0.0.1:" << http_port_ << "; root " << r << "; autoindex on; }\n"
    << "  server { listen 127.0.0.1:" << json_port_ << "; root " << r
    << "; autoindex on; autoindex_format json; }\n"
    << "  server { listen 127.0.0.1:" << https_port_ << " ssl http2; root " << r
    << "; autoindex on;\n    ssl_certificate " << d << "/tls/server.pem;\n"
    << "    ssl_certificate_key " << d << "/tls/server.key; }\n"
    << "}\n";
}

bool NginxServer::spawn() {
  const std::string bin = nginx_binary();
  if (bin.empty()) {
    error_ = "nginx is not installed (scripts/setup.sh installs nginx-light)";
    return false;
  }
  const std::string conf = (dir_ / "nginx.conf").string();
  const std::string prefix = dir_.string() + "/";
  const std::string errlog = (dir_ / "error.log").string();
  pid_ = testing::spawn({bin, "-c", conf, "-p", prefix, "-e", errlog});
  if (pid_ < 0) {
    error_ = "fork failed";
    return false;
  }
  if (wait_ready(pid_, [&] {
        return answers(http_port_) && answers(json_port_) && answers(https_port_);
      })) {
    return true;
  }
  if (pid_ < 0) {
    error_ = "nginx exited at start: " + log();
    return false;
  }
  error_ = "nginx did not answer within 5 s: " + log();
  stop();
  return false;
}

bool NginxServer::start() {
  if (!make_tls()) return false;
  for (int attempt = 0; attempt < 3; ++attempt) {
    http_port_ = free_port();
    json_port_ = free_port();
    https_port_ = free_port();
    if (http_port_ == 0 || json_port_ == 0 || https_port_ == 0 || http_port_ == json_port_ ||
        json_port_ == https_port_ || http_port_ == https_port_) {
      continue;
    }
    write_config();
    if (spawn()) return true;
  }
  return false;
}

bool NginxServer::restart() {
  stop();
  return spawn();
}

void NginxServer::stop() {
  stop_child(pid_);
}

void NginxServer::kill9() {
  if (pid_ <= 0) return;
  ::kill(pid_, SIGKILL);
  int status = 0;
  ::waitpid(pid_, &status, 0);
  pid_ = -1;
}

}  // namespace xfer::testing
