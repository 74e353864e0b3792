// Sealing secrets with a passphrase (secrets.hpp): libsodium's Argon2id and
// XChaCha20-Poly1305. Thread-safe: sodium_init is called once, the rest is
// pure. Key material is wiped (sodium_memzero) before its memory is freed.

#include "xfer/core/secrets.hpp"

#include <fcntl.h>
#include <fmt/format.h>
#include <sodium.h>
#include <termios.h>
#include <unistd.h>

#include <array>
#include <cstdlib>
#include <mutex>
#include <vector>

#include "xfer/core/files.hpp"

namespace xfer {
namespace {

constexpr std::string_view kVersion = "v1";
constexpr std::string_view kAlgorithm = "argon2id";
// Bounds on the costs a sealed value may ask for: a crafted value must not
// make us allocate gigabytes or spin for minutes.
constexpr unsigned long long kMaxOps = 10;
constexpr std::size_t kMaxMemKiB = 1u << 20;  // 1 GiB
constexpr std::size_t kMaxSecretBytes = 64u << 10;
// Binds the ciphertext to its use: a value sealed for something else with
// the same construction does not open here.
constexpr std::string_view kAssociated = "xfer credentials v1";

Status init_sodium() {
  static const int rc = sodium_init();
  if (rc < 0) return make_error(ErrorCode::kInternal, "seal", "", "libsodium failed to start");
  return ok_status();
}

std::string to_base64(const unsigned char* data, std::size_t n) {
  std::string out(sodium_base64_encoded_len(n, sodium_base64_VARIANT_URLSAFE_NO_PADDING), '\0');
  sodium_bin2base64(out.data(), out.size(), data, n, sodium_base64_VARIANT_URLSAFE_NO_PADDING);
  out.resize(std::strlen(out.c_str()));
  return out;
}

bool from_base64(std::string_view text, std::vector<unsigned char>& out) {
  out.resize(text.size());
  std::size_t n = 0;
  if (sodium_base642bin(out.data(), out.size(), text.data(), text.size(), nullptr, &n, nullptr,
                        sodium_base64_VARIANT_URLSAFE_NO_PADDING) != 0) {
    return false;
  }
  out.resize(n);
  return true;
}

Error damaged(std::string_view why) {
  return make_error(ErrorCode::kInvalidArgument, "unseal", "",
                    fmt::format("not a sealed secret: {}", why));
}

// The key for `passphrase` and `salt`, or an error (out of memory for the
// costs asked).
struct Key {
  std::array<unsigned char, crypto_aead_xchacha20poly1305_ietf_KEYBYTES> bytes{};
  ~Key() { sodium_memzero(bytes.data(), bytes.size()); }
};
Status derive(Key& key, std::string_view passphrase, const unsigned char* salt,
              unsigned long long ops, std::size_t mem_bytes) {
  if (crypto_pwhash(key.bytes.data(), key.bytes.size(), passphrase.data(), passphrase.size(), salt,
                    ops, mem_bytes, crypto_pwhash_ALG_ARGON2ID13) != 0) {
    return make_error(ErrorCode::kInternal, "seal", "",
                      "not enough memory to derive the key from the passphrase");
  }
  return ok_status();
}

std::vector<std::string_view> split(std::string_view s, char sep) {
  std::vector<std::string_view> parts;
  std::size_t start = 0;
  for (;;) {
    const std::size_t at = s.find(sep, start);
    parts.push_back(s.substr(start, at == std::string_view::npos ? at : at - start));
    if (at == std::string_view::npos) return parts;
    start = at + 1;
  }
}

}  // namespace

bool is_sealed(std::string_view value) {
  return value.substr(0, kSealedPrefix.size()) == kSealedPrefix;
}

Result<std::string> seal_secret(std::string_view secret, std::string_view passphrase,
                                SealCost cost) {
  XFER_TRY(init_sodium());
  if (passphrase.empty()) {
    return make_error(ErrorCode::kInvalidArgument, "seal", "", "empty passphrase");
  }
  if (secret.size() > kMaxSecretBytes) {
    return make_error(ErrorCode::kInvalidArgument, "seal", "", "secret too long");
  }
  cost.ops = std::max<unsigned long long>(cost.ops, crypto_pwhash_OPSLIMIT_MIN);
  cost.mem_bytes = std::max<std::size_t>(cost.mem_bytes, crypto_pwhash_MEMLIMIT_MIN);
  std::array<unsigned char, crypto_pwhash_SALTBYTES> salt{};
  std::array<unsigned char, crypto_aead_xchacha20poly1305_ietf_NPUBBYTES> nonce{};
  randombytes_buf(salt.data(), salt.size());
  randombytes_buf(nonce.data(), nonce.size());
  Key key;
  XFER_TRY(derive(key, passphrase, salt.data(), cost.ops, cost.mem_bytes));
  std::vector<unsigned char> sealed(secret.size() + crypto_aead_xchacha20poly1305_ietf_ABYTES);
  unsigned long long n = 0;
  crypto_aead_xchacha20poly1305_ietf_encrypt(
      sealed.data(), &n, reinterpret_cast<const unsigned char*>(secret.data()), secret.size(),
      reinterpret_cast<const unsigned char*>(kAssociated.data()), kAssociated.size(), nullptr,
      nonce.data(), key.bytes.data());
  return fmt::format("{}{}${}$t={},m={}${}${}${}", kSealedPrefix, kVersion, kAlgorithm, cost.ops,
                     cost.mem_bytes / 1024, to_base64(salt.data(), salt.size()),
                     to_base64(nonce.data(), nonce.size()), to_base64(sealed.data(), n));
}

Result<std::string> unseal_secret(std::string_view sealed, std::string_view passphrase) {
  XFER_TRY(init_sodium());
  if (!is_sealed(sealed)) return damaged("missing the $xfer-sealed$ prefix");
  if (sealed.size() > 2 * kMaxSecretBytes) return damaged("too long");
  const auto parts = split(sealed.substr(kSealedPrefix.size()), '$');
  if (parts.size() != 6) return damaged("wrong number of fields");
  if (parts[0] != kVersion) return damaged("unknown version (sealed by a newer xfer?)");
  if (parts[1] != kAlgorithm) return damaged("unknown algorithm");
  unsigned long long ops = 0;
  unsigned long long mem_kib = 0;
  if (std::sscanf(std::string(parts[2]).c_str(), "t=%llu,m=%llu", &ops, &mem_kib) != 2 ||
      ops < crypto_pwhash_OPSLIMIT_MIN || ops > kMaxOps ||
      mem_kib * 1024 < crypto_pwhash_MEMLIMIT_MIN || mem_kib > kMaxMemKiB) {
    return damaged("costs out of range");
  }
  std::vector<unsigned char> salt, nonce, box;
  if (!from_base64(parts[3], salt) || salt.size() != crypto_pwhash_SALTBYTES ||
      !from_base64(parts[4], nonce) ||
      nonce.size() != crypto_aead_xchacha20poly1305_ietf_NPUBBYTES || !from_base64(parts[5], box) ||
      box.size() < crypto_aead_xchacha20poly1305_ietf_ABYTES) {
    return damaged("bad salt, nonce or ciphertext");
  }
  Key key;
  XFER_TRY(derive(key, passphrase, salt.data(), ops, static_cast<std::size_t>(mem_kib * 1024)));
  std::string plain(box.size() - crypto_aead_xchacha20poly1305_ietf_ABYTES, '\0');
  unsigned long long n = 0;
  if (crypto_aead_xchacha20poly1305_ietf_decrypt(
          reinterpret_cast<unsigned char*>(plain.data()), &n, nullptr, box.data(), box.size(),
          reinterpret_cast<const unsigned char*>(kAssociated.data()), kAssociated.size(),
          nonce.data(), key.bytes.data()) != 0) {
    return make_error(ErrorCode::kPermission, "unseal", "", "wrong passphrase or damaged secret");
  }
  plain.resize(n);
  return plain;
}

Result<std::string> passphrase_from(const PassphraseSource& source) {
  if (source) {
    auto p = source();
    if (p || p.error().code != ErrorCode::kUnavailable) return p;
  }
  if (const char* env = std::getenv("XFER_PASSPHRASE"); env != nullptr && *env != '\0') {
    return std::string(env);
  }
  return make_error(ErrorCode::kPermission, "unseal", "",
                    "the credentials are sealed: give the passphrase on a terminal, in "
                    "$XFER_PASSPHRASE or with --passphrase-file");
}

Result<std::string> read_passphrase_file(const std::string& path) {
  XFER_ASSIGN_OR_RETURN(std::string text, read_small_file(path, 4096));
  const std::size_t eol = text.find('\n');
  if (eol != std::string::npos) text.resize(eol);
  if (!text.empty() && text.back() == '\r') text.pop_back();
  if (text.empty()) {
    return make_error(ErrorCode::kInvalidArgument, "read passphrase", path, "empty passphrase");
  }
  return text;
}

Result<std::string> prompt_passphrase(const std::string& prompt) {
  const int tty = ::open("/dev/tty", O_RDWR | O_CLOEXEC | O_NOCTTY);
  if (tty < 0) {
    return make_error(ErrorCode::kUnavailable, "read passphrase", "", "no terminal to ask on");
  }
  struct Closer {
    int fd;
    ~Closer() { ::close(fd); }
  } closer{tty};
  termios old{};
  if (::tcgetattr(tty, &old) != 0) {
    return make_error(ErrorCode::kUnavailable, "read passphrase", "", "no terminal to ask on");
  }
  termios quiet = old;
  quiet.c_lflag &= ~static_cast<tcflag_t>(ECHO);
  (void)::write(tty, prompt.data(), prompt.size());
  ::tcsetattr(tty, TCSAFLUSH, &quiet);
  std::string line;
  char c = 0;
  while (line.size() < 4096 && ::read(tty, &c, 1) == 1 && c != '\n') line += c;
  ::tcsetattr(tty, TCSAFLUSH, &old);
  (void)::write(tty, "\n", 1);
  if (line.empty()) {
    return make_error(ErrorCode::kInvalidArgument, "read passphrase", "", "empty passphrase");
  }
  return line;
}

}  // namespace xfer
