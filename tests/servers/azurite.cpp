// AzuriteServer (azurite.hpp): Azurite's blob service on Node, one process,
// stopped by PID; requests of its own signed with Shared Key.

#include "azurite.hpp"

#include <curl/curl.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>

#include <cstdlib>
#include <ctime>
#include <map>
#include <vector>

#include "common.hpp"

namespace xfer::testing {
namespace {

std::string npm_dir() {
  const char* d = std::getenv("XFER_NPM_DIR");
  return d != nullptr && *d != '\0' ? d : "/opt/xfer-npm";
}

std::string http_date() {
  static const char* kDays[] = {"Sun", "Mon", "Tue", "Wed", "Thu", "Fri", "Sat"};
  static const char* kMonths[] = {"Jan", "Feb", "Mar", "Apr", "May", "Jun",
                                  "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"};
  const std::time_t t = std::time(nullptr);
  std::tm tm{};
  ::gmtime_r(&t, &tm);
  char buf[64];
  std::snprintf(buf, sizeof buf, "%s, %02d %s %d %02d:%02d:%02d GMT", kDays[tm.tm_wday], tm.tm_mday,
                kMonths[tm.tm_mon], tm.tm_year + 1900, tm.tm_hour, tm.tm_min, tm.tm_sec);
  return buf;
}

std::string signature(const std::string& string_to_sign) {
  std::vector<unsigned char> key(64);
  const std::string k = AzuriteServer::kKey;
  const int klen = EVP_DecodeBlock(key.data(), reinterpret_cast<const unsigned char*>(k.data()),
                                   static_cast<int>(k.size()));
  key.resize(static_cast<std::size_t>(klen - 2));  // "==": two bytes of padding
  unsigned char mac[EVP_MAX_MD_SIZE];
  unsigned int mac_len = 0;
  HMAC(EVP_sha256(), key.data(), static_cast<int>(key.size()),
       reinterpret_cast<const unsigned char*>(string_to_sign.data()), string_to_sign.size(), mac,
       &mac_len);
  std::string out(4 * ((mac_len + 2) / 3) + 1, '\0');
  const int n =
      EVP_EncodeBlock(reinterpret_cast<unsigned char*>(out.data()), mac, static_cast<int>(mac_len));
  out.resize(static_cast<std::size_t>(n));
  return out;
}

std::size_t collect(char* p, std::size_t size, std::size_t n, void* out) {
  static_cast<std::string*>(out)->append(p, size * n);
  return size * n;
}

}  // namespace

AzuriteServer::AzuriteServer(std::filesystem::path dir, std::string container)
    : dir_(std::move(dir)), container_(std::move(container)) {}

AzuriteServer::~AzuriteServer() {
  stop();
}

bool AzuriteServer::spawn() {
  const std::string js = npm_dir() + "/node_modules/azurite/dist/src/blob/main.js";
  if (!std::filesystem::exists(js)) {
    error_ = "Azurite is not installed at " + js + " (scripts/setup.sh installs it)";
    return false;
  }
  pid_ = testing::spawn({"/usr/bin/env", "node", js, "--blobHost", "127.0.0.1", "--blobPort",
                         std::to_string(port_), "-l", (dir_ / "data").string(),
                         "--skipApiVersionCheck", "--loose", "--disableTelemetry", "--silent"});
  if (pid_ < 0) {
    error_ = "fork failed";
    return false;
  }
  const int port = port_;
  // Azurite takes 3-4 s to come up; wait_ready gives 5 s, so twice.
  for (int round = 0; round < 3 && pid_ > 0; ++round) {
    if (wait_ready(pid_, [port] { return answers(port); })) return true;
  }
  error_ = "Azurite did not come up on port " + std::to_string(port_);
  stop_child(pid_);
  return false;
}

bool AzuriteServer::start() {
  std::filesystem::create_directories(dir_ / "data");
  for (int attempt = 0; attempt < 3; ++attempt) {
    port_ = free_port();
    if (spawn()) return make_container(container_);
    if (error_.find("not installed") != std::string::npos) return false;
  }
  return false;
}

void AzuriteServer::stop() {
  stop_child(pid_);
}

long AzuriteServer::request(const std::string& method, const std::string& path_and_query,
                            std::string* body) {
  const auto q = path_and_query.find('?');
  const std::string path = "/" + std::string(kAccount) + path_and_query.substr(0, q);
  std::map<std::string, std::string> query;
  if (q != std::string::npos) {
    std::string rest = path_and_query.substr(q + 1);
    while (!rest.empty()) {
      const auto amp = rest.find('&');
      const std::string kv = rest.substr(0, amp);
      const auto eq = kv.find('=');
      query[kv.substr(0, eq)] = eq == std::string::npos ? "" : kv.substr(eq + 1);
      rest = amp == std::string::npos ? "" : rest.substr(amp + 1);
    }
  }
  const std::string date = http_date();
  std::string sts = method + "\n\n\n\n\n\n\n\n\n\n\n\n";
  sts += "x-ms-date:" + date + "\nx-ms-version:2021-08-06\n/" + std::string(kAccount) + path;
  for (const auto& [k, v] : query) sts += "\n" + k + ":" + v;  // plain values only
  CURL* curl = curl_easy_init();
  if (curl == nullptr) return -1;
  const std::string url = "http://127.0.0.1:" + std::to_string(port_) + path +
                          (q == std::string::npos ? "" : path_and_query.substr(q));
  curl_slist* headers = nullptr;
  headers = curl_slist_append(headers, ("x-ms-date: " + date).c_str());
  headers = curl_slist_append(headers, "x-ms-version: 2021-08-06");
  headers = curl_slist_append(
      headers,
      ("Authorization: SharedKey " + std::string(kAccount) + ":" + signature(sts)).c_str());
  std::string got;
  curl_easy_setopt(curl, CURLOPT_URL, url.c_str());
  curl_easy_setopt(curl, CURLOPT_CUSTOMREQUEST, method.c_str());
  if (method == "PUT") {
    curl_easy_setopt(curl, CURLOPT_POSTFIELDS, "");
    headers = curl_slist_append(headers, "Content-Type:");  // none: it is signed as none
  }
  curl_easy_setopt(curl, CURLOPT_HTTPHEADER, headers);
  curl_easy_setopt(curl, CURLOPT_WRITEFUNCTION, &collect);
  curl_easy_setopt(curl, CURLOPT_WRITEDATA, &got);
  curl_easy_setopt(curl, CURLOPT_TIMEOUT, 30L);
  const CURLcode rc = curl_easy_perform(curl);
  long status = 0;
  curl_easy_getinfo(curl, CURLINFO_RESPONSE_CODE, &status);
  curl_slist_free_all(headers);
  curl_easy_cleanup(curl);
  if (body != nullptr) *body = got;
  if (rc != CURLE_OK) {
    error_ = std::string("request to Azurite: ") + curl_easy_strerror(rc);
    return -1;
  }
  return status;
}

bool AzuriteServer::make_container(const std::string& name) {
  std::string body;
  const long status = request("PUT", "/" + name + "?restype=container", &body);
  if (status != 201) {
    error_ = "making container " + name + ": HTTP " + std::to_string(status) + " " + body;
    return false;
  }
  return true;
}

std::string AzuriteServer::endpoint() const {
  return "http://127.0.0.1:" + std::to_string(port_) + "/" + kAccount;
}

}  // namespace xfer::testing
