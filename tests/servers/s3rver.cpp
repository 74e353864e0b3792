// S3rverServer (s3rver.hpp): s3rver on Node, one process, stopped by PID.

#include "s3rver.hpp"

#include <curl/curl.h>
#include <signal.h>
#include <sys/wait.h>

#include <cstdlib>

#include "common.hpp"

namespace xfer::testing {
namespace {

std::string npm_dir() {
  const char* d = std::getenv("XFER_NPM_DIR");
  return d != nullptr && *d != '\0' ? d : "/opt/xfer-npm";
}

}  // namespace

S3rverServer::S3rverServer(std::filesystem::path dir, std::string bucket)
    : dir_(std::move(dir)), data_(dir_ / "data"), bucket_(std::move(bucket)) {}

S3rverServer::~S3rverServer() {
  stop();
}

bool S3rverServer::spawn() {
  const std::string js = npm_dir() + "/node_modules/s3rver/bin/s3rver.js";
  if (!std::filesystem::exists(js)) {
    error_ = "s3rver is not installed at " + js + " (scripts/setup.sh installs it)";
    return false;
  }
  // s3rver 3.7.1 makes listing tokens with DES, which OpenSSL 3 keeps in
  // its legacy provider.
  pid_ = testing::spawn({"/usr/bin/env", "NODE_OPTIONS=--openssl-legacy-provider", "node", js, "-d",
                         data_.string(), "-a", "127.0.0.1", "-p", std::to_string(port_),
                         "--configure-bucket", bucket_, "--silent"});
  if (pid_ < 0) {
    error_ = "fork failed";
    return false;
  }
  const int port = port_;
  if (!wait_ready(pid_, [port] { return answers(port); })) {
    error_ = "s3rver did not come up on port " + std::to_string(port_);
    stop_child(pid_);
    return false;
  }
  return true;
}

bool S3rverServer::start() {
  std::filesystem::create_directories(data_);
  for (int attempt = 0; attempt < 3; ++attempt) {
    port_ = free_port();
    if (spawn()) return true;
    if (error_.find("not installed") != std::string::npos) return false;
  }
  return false;
}

void S3rverServer::stop() {
  stop_child(pid_);
}

void S3rverServer::kill9() {
  if (pid_ <= 0) return;
  ::kill(pid_, SIGKILL);
  ::waitpid(pid_, nullptr, 0);
  pid_ = -1;
}

bool S3rverServer::restart() {
  stop();
  return spawn();
}

bool S3rverServer::make_bucket(const std::string& name) {
  CURL* curl = curl_easy_init();
  if (curl == nullptr) {
    error_ = "curl_easy_init failed";
    return false;
  }
  const std::string url = endpoint() + "/" + name;
  curl_easy_setopt(curl, CURLOPT_URL, url.c_str());
  curl_easy_setopt(curl, CURLOPT_CUSTOMREQUEST, "PUT");
  curl_easy_setopt(curl, CURLOPT_NOBODY, 1L);
  curl_easy_setopt(curl, CURLOPT_TIMEOUT, 30L);
  const CURLcode rc = curl_easy_perform(curl);
  long status = 0;
  curl_easy_getinfo(curl, CURLINFO_RESPONSE_CODE, &status);
  curl_easy_cleanup(curl);
  if (rc != CURLE_OK || status != 200) {
    error_ = "making bucket " + name + ": " + curl_easy_strerror(rc) + ", HTTP " +
             std::to_string(status);
    return false;
  }
  return true;
}

std::string S3rverServer::endpoint() const {
  return "http://127.0.0.1:" + std::to_string(port_);
}

std::string S3rverServer::env() const {
  return "AWS_ACCESS_KEY_ID=S3RVER AWS_SECRET_ACCESS_KEY=S3RVER AWS_ENDPOINT_URL=" + endpoint();
}

}  // namespace xfer::testing
