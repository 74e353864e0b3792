// Data-channel sealing on OpenSSL 3 (crypto.hpp): X25519 agreement, HKDF,
// AES-256-GCM per frame. Key agreement is stateless; a FrameCipher belongs to
// one direction of one connection (its send lock, or its one reader thread).

#include "xfer/protocol/crypto.hpp"

#include <fmt/format.h>
#include <openssl/core_names.h>
#include <openssl/crypto.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <openssl/kdf.h>
#include <openssl/params.h>
#include <openssl/rand.h>

#include <algorithm>
#include <climits>
#include <cstring>
#include <limits>
#include <string>
#include <utility>
#include <vector>

namespace xfer::protocol {
namespace {

// Drains OpenSSL's thread-local error queue into one line, so a later
// failure does not report a stale reason.
std::string openssl_errors() {
  std::string out;
  while (unsigned long e = ERR_get_error()) {
    char buf[256];
    ERR_error_string_n(e, buf, sizeof(buf));
    if (!out.empty()) out += "; ";
    out += buf;
  }
  return out.empty() ? std::string("no OpenSSL error queued") : out;
}

Error ssl_error(std::string_view operation) {
  return make_error(ErrorCode::kInternal, operation, {}, openssl_errors(), RetryClass::kFatal);
}

struct PkeyFree {
  void operator()(EVP_PKEY* p) const { EVP_PKEY_free(p); }
};
struct PkeyCtxFree {
  void operator()(EVP_PKEY_CTX* p) const { EVP_PKEY_CTX_free(p); }
};
struct KdfFree {
  void operator()(EVP_KDF* p) const { EVP_KDF_free(p); }
};
struct KdfCtxFree {
  void operator()(EVP_KDF_CTX* p) const { EVP_KDF_CTX_free(p); }
};
using PkeyPtr = std::unique_ptr<EVP_PKEY, PkeyFree>;
using PkeyCtxPtr = std::unique_ptr<EVP_PKEY_CTX, PkeyCtxFree>;
using KdfCtxPtr = std::unique_ptr<EVP_KDF_CTX, KdfCtxFree>;

EVP_CIPHER_CTX* cipher_ctx(void* p) {
  return static_cast<EVP_CIPHER_CTX*>(p);
}

// OpenSSL's update calls take int lengths; feed larger spans in pieces.
constexpr std::size_t kMaxUpdate = 1u << 30;

// The 96-bit GCM nonce: the frame counter, little-endian, then 4 zero bytes.
std::array<unsigned char, 12> nonce_for(std::uint64_t counter) {
  std::array<unsigned char, 12> iv{};
  for (int i = 0; i < 8; ++i)
    iv[static_cast<std::size_t>(i)] = static_cast<unsigned char>(counter >> (8 * i));
  return iv;
}

// HKDF-SHA256 (extract and expand) of 32 bytes.
Status hkdf_sha256(std::span<const std::uint8_t> ikm, std::span<const std::uint8_t> salt,
                   std::string_view info, std::array<std::uint8_t, 32>& out) {
  std::unique_ptr<EVP_KDF, KdfFree> kdf(EVP_KDF_fetch(nullptr, "HKDF", nullptr));
  if (!kdf) return ssl_error("fetch HKDF");
  KdfCtxPtr ctx(EVP_KDF_CTX_new(kdf.get()));
  if (!ctx) return ssl_error("create HKDF context");
  char digest[] = "SHA256";
  OSSL_PARAM params[] = {
      OSSL_PARAM_construct_utf8_string(OSSL_KDF_PARAM_DIGEST, digest, 0),
      OSSL_PARAM_construct_octet_string(OSSL_KDF_PARAM_KEY, const_cast<std::uint8_t*>(ikm.data()),
                                        ikm.size()),
      OSSL_PARAM_construct_octet_string(OSSL_KDF_PARAM_SALT, const_cast<std::uint8_t*>(salt.data()),
                                        salt.size()),
      OSSL_PARAM_construct_octet_string(OSSL_KDF_PARAM_INFO, const_cast<char*>(info.data()),
                                        info.size()),
      OSSL_PARAM_construct_end(),
  };
  if (EVP_KDF_derive(ctx.get(), out.data(), out.size(), params) != 1) {
    return ssl_error("derive HKDF-SHA256");
  }
  return ok_status();
}

}  // namespace

// ---- KeyPair.

Result<KeyPair> KeyPair::generate() {
  PkeyCtxPtr ctx(EVP_PKEY_CTX_new_id(EVP_PKEY_X25519, nullptr));
  if (!ctx) return ssl_error("create X25519 context");
  if (EVP_PKEY_keygen_init(ctx.get()) != 1) return ssl_error("init X25519 keygen");
  EVP_PKEY* raw = nullptr;
  if (EVP_PKEY_keygen(ctx.get(), &raw) != 1) return ssl_error("generate X25519 key");
  PkeyPtr pkey(raw);
  KeyPair kp;
  std::size_t len = kp.public_.size();
  if (EVP_PKEY_get_raw_public_key(pkey.get(), kp.public_.data(), &len) != 1 ||
      len != kp.public_.size()) {
    return ssl_error("read X25519 public key");
  }
  kp.pkey_ = pkey.release();
  return kp;
}

// A peer key OpenSSL rejects (a low-order point gives an all-zero secret,
// which OpenSSL refuses) is bad input from the peer: kCorrupt, not kInternal.
Result<std::array<std::uint8_t, 32>> KeyPair::agree(std::span<const std::uint8_t, 32> peer) const {
  if (pkey_ == nullptr) {
    return make_error(ErrorCode::kInternal, "X25519 agree", {}, "key pair was moved from");
  }
  PkeyPtr peer_key(EVP_PKEY_new_raw_public_key(EVP_PKEY_X25519, nullptr, peer.data(), peer.size()));
  if (!peer_key) return ssl_error("load X25519 peer key");
  PkeyCtxPtr ctx(EVP_PKEY_CTX_new(static_cast<EVP_PKEY*>(pkey_), nullptr));
  if (!ctx) return ssl_error("create X25519 derive context");
  if (EVP_PKEY_derive_init(ctx.get()) != 1) return ssl_error("init X25519 derive");
  std::array<std::uint8_t, 32> secret{};
  std::size_t len = secret.size();
  if (EVP_PKEY_derive_set_peer(ctx.get(), peer_key.get()) != 1 ||
      EVP_PKEY_derive(ctx.get(), secret.data(), &len) != 1) {
    return make_error(ErrorCode::kCorrupt, "X25519 agree", {},
                      fmt::format("peer public key rejected: {}", openssl_errors()));
  }
  if (len != secret.size() ||
      std::all_of(secret.begin(), secret.end(), [](std::uint8_t b) { return b == 0; })) {
    return make_error(ErrorCode::kCorrupt, "X25519 agree", {},
                      "peer public key rejected: all-zero shared secret");
  }
  return secret;
}

KeyPair::KeyPair(KeyPair&& other) noexcept
    : pkey_(std::exchange(other.pkey_, nullptr)), public_(other.public_) {}

KeyPair& KeyPair::operator=(KeyPair&& other) noexcept {
  if (this != &other) {
    EVP_PKEY_free(static_cast<EVP_PKEY*>(pkey_));
    pkey_ = std::exchange(other.pkey_, nullptr);
    public_ = other.public_;
  }
  return *this;
}

KeyPair::~KeyPair() {
  EVP_PKEY_free(static_cast<EVP_PKEY*>(pkey_));
}

// ---- Key derivation.

Result<SessionKeys> derive_keys(std::span<const std::uint8_t, 32> shared,
                                std::string_view data_token,
                                std::span<const std::uint8_t, 16> client_nonce,
                                std::span<const std::uint8_t, 16> server_nonce) {
  // salt = SHA-256(data_token) || client_nonce || server_nonce (64 bytes).
  std::array<std::uint8_t, 64> salt{};
  unsigned int digest_len = 0;
  if (EVP_Digest(data_token.data(), data_token.size(), salt.data(), &digest_len, EVP_sha256(),
                 nullptr) != 1 ||
      digest_len != 32) {
    return ssl_error("SHA-256 of the data token");
  }
  std::memcpy(salt.data() + 32, client_nonce.data(), 16);
  std::memcpy(salt.data() + 48, server_nonce.data(), 16);
  SessionKeys keys;
  XFER_TRY(hkdf_sha256(shared, salt, "xfer/1 c2s", keys.client_to_server));
  XFER_TRY(hkdf_sha256(shared, salt, "xfer/1 s2c", keys.server_to_client));
  return keys;
}

// ---- FrameCipher.
//
// The context is set up once with the cipher and key; each frame re-inits it
// with only the new IV, which keeps the expanded key schedule. Every seal or
// open call that reaches the cipher consumes one counter value, whether it
// succeeds or not: a nonce is never used twice with the key, and after a
// failed open the receiver is out of step with the sender — the connection
// must be closed (a frame that fails authentication is fatal anyway).

Result<FrameCipher> FrameCipher::create(std::span<const std::uint8_t, 32> key) {
  FrameCipher c;
  c.ctx_ = EVP_CIPHER_CTX_new();
  if (c.ctx_ == nullptr) return ssl_error("create AES-256-GCM context");
  auto* ctx = cipher_ctx(c.ctx_);
  if (EVP_EncryptInit_ex(ctx, EVP_aes_256_gcm(), nullptr, nullptr, nullptr) != 1 ||
      EVP_CIPHER_CTX_ctrl(ctx, EVP_CTRL_GCM_SET_IVLEN, 12, nullptr) != 1 ||
      EVP_EncryptInit_ex(ctx, nullptr, nullptr, key.data(), nullptr) != 1) {
    return ssl_error("init AES-256-GCM");
  }
  return c;
}

Status FrameCipher::seal(std::span<const std::byte> aad, std::span<std::byte> data,
                         std::span<std::byte, 16> tag) {
  XFER_TRY(seal_begin(aad));
  XFER_TRY(seal_update(data));
  return seal_end(tag);
}

Status FrameCipher::seal_begin(std::span<const std::byte> aad) {
  constexpr std::string_view kOp = "seal data frame";
  if (ctx_ == nullptr) return make_error(ErrorCode::kInternal, kOp, {}, "cipher was moved from");
  if (counter_ == std::numeric_limits<std::uint64_t>::max()) {
    return make_error(ErrorCode::kInternal, kOp, {}, "frame counter exhausted");
  }
  auto* ctx = cipher_ctx(ctx_);
  const auto iv = nonce_for(counter_++);
  if (EVP_EncryptInit_ex(ctx, nullptr, nullptr, nullptr, iv.data()) != 1) return ssl_error(kOp);
  int outl = 0;
  for (std::size_t pos = 0; pos < aad.size(); pos += kMaxUpdate) {
    const auto n = static_cast<int>(std::min(kMaxUpdate, aad.size() - pos));
    if (EVP_EncryptUpdate(ctx, nullptr, &outl,
                          reinterpret_cast<const unsigned char*>(aad.data() + pos), n) != 1) {
      return ssl_error(kOp);
    }
  }
  return ok_status();
}

Status FrameCipher::seal_update(std::span<std::byte> data) {
  constexpr std::string_view kOp = "seal data frame";
  if (ctx_ == nullptr) return make_error(ErrorCode::kInternal, kOp, {}, "cipher was moved from");
  auto* ctx = cipher_ctx(ctx_);
  int outl = 0;
  // GCM is a stream mode: each update returns exactly its input's length.
  for (std::size_t pos = 0; pos < data.size(); pos += kMaxUpdate) {
    const auto n = static_cast<int>(std::min(kMaxUpdate, data.size() - pos));
    auto* p = reinterpret_cast<unsigned char*>(data.data() + pos);
    if (EVP_EncryptUpdate(ctx, p, &outl, p, n) != 1 || outl != n) return ssl_error(kOp);
  }
  return ok_status();
}

Status FrameCipher::seal_end(std::span<std::byte, 16> tag) {
  constexpr std::string_view kOp = "seal data frame";
  if (ctx_ == nullptr) return make_error(ErrorCode::kInternal, kOp, {}, "cipher was moved from");
  auto* ctx = cipher_ctx(ctx_);
  int outl = 0;
  unsigned char unused[16];
  if (EVP_EncryptFinal_ex(ctx, unused, &outl) != 1 ||
      EVP_CIPHER_CTX_ctrl(ctx, EVP_CTRL_GCM_GET_TAG, 16, tag.data()) != 1) {
    return ssl_error(kOp);
  }
  return ok_status();
}

// On failure `data` is zeroed: unauthenticated plaintext never leaks out.
Status FrameCipher::open(std::span<const std::byte> aad, std::span<std::byte> data,
                         std::span<const std::byte, 16> tag) {
  constexpr std::string_view kOp = "open data frame";
  if (ctx_ == nullptr) return make_error(ErrorCode::kInternal, kOp, {}, "cipher was moved from");
  if (counter_ == std::numeric_limits<std::uint64_t>::max()) {
    return make_error(ErrorCode::kInternal, kOp, {}, "frame counter exhausted");
  }
  auto* ctx = cipher_ctx(ctx_);
  const auto iv = nonce_for(counter_++);
  auto fail_internal = [&] {
    std::fill(data.begin(), data.end(), std::byte{0});
    return ssl_error(kOp);
  };
  if (EVP_DecryptInit_ex(ctx, nullptr, nullptr, nullptr, iv.data()) != 1) return fail_internal();
  int outl = 0;
  for (std::size_t pos = 0; pos < aad.size(); pos += kMaxUpdate) {
    const auto n = static_cast<int>(std::min(kMaxUpdate, aad.size() - pos));
    if (EVP_DecryptUpdate(ctx, nullptr, &outl,
                          reinterpret_cast<const unsigned char*>(aad.data() + pos), n) != 1) {
      return fail_internal();
    }
  }
  for (std::size_t pos = 0; pos < data.size(); pos += kMaxUpdate) {
    const auto n = static_cast<int>(std::min(kMaxUpdate, data.size() - pos));
    auto* p = reinterpret_cast<unsigned char*>(data.data() + pos);
    if (EVP_DecryptUpdate(ctx, p, &outl, p, n) != 1 || outl != n) return fail_internal();
  }
  // OpenSSL's SET_TAG takes a non-const pointer but only copies from it.
  std::array<unsigned char, 16> expected{};
  std::memcpy(expected.data(), tag.data(), expected.size());
  if (EVP_CIPHER_CTX_ctrl(ctx, EVP_CTRL_GCM_SET_TAG, 16, expected.data()) != 1) {
    return fail_internal();
  }
  unsigned char unused[16];
  if (EVP_DecryptFinal_ex(ctx, unused, &outl) != 1) {
    ERR_clear_error();  // a bad tag is the peer's doing, not an OpenSSL fault
    std::fill(data.begin(), data.end(), std::byte{0});
    return make_error(ErrorCode::kCorrupt, kOp, {}, "data frame authentication failed");
  }
  return ok_status();
}

FrameCipher::FrameCipher(FrameCipher&& other) noexcept
    : ctx_(std::exchange(other.ctx_, nullptr)), counter_(other.counter_) {}

FrameCipher& FrameCipher::operator=(FrameCipher&& other) noexcept {
  if (this != &other) {
    EVP_CIPHER_CTX_free(cipher_ctx(ctx_));
    ctx_ = std::exchange(other.ctx_, nullptr);
    counter_ = other.counter_;
  }
  return *this;
}

FrameCipher::~FrameCipher() {
  EVP_CIPHER_CTX_free(cipher_ctx(ctx_));
}

// ---- Randomness.

Status random_bytes(std::span<std::uint8_t> out) {
  for (std::size_t pos = 0; pos < out.size(); pos += kMaxUpdate) {
    const auto n = static_cast<int>(std::min(kMaxUpdate, out.size() - pos));
    if (RAND_bytes(out.data() + pos, n) != 1) return ssl_error("RAND_bytes");
  }
  return ok_status();
}

}  // namespace xfer::protocol

namespace xfer::protocol {
namespace {

std::string hello_proof(std::string_view data_token, std::span<const std::uint8_t, 32> public_key,
                        std::span<const std::uint8_t, 16> nonce) {
  static constexpr std::string_view kLabel = "xfer/1 hello";
  std::array<std::uint8_t, kLabel.size() + 32 + 16> msg{};
  std::memcpy(msg.data(), kLabel.data(), kLabel.size());
  std::memcpy(msg.data() + kLabel.size(), public_key.data(), 32);
  std::memcpy(msg.data() + kLabel.size() + 32, nonce.data(), 16);
  unsigned char mac[EVP_MAX_MD_SIZE];
  unsigned int len = 0;
  if (HMAC(EVP_sha256(), data_token.data(), static_cast<int>(data_token.size()), msg.data(),
           msg.size(), mac, &len) == nullptr) {
    return {};
  }
  static constexpr char kHex[] = "0123456789abcdef";
  std::string out;
  out.reserve(len * 2);
  for (unsigned i = 0; i < len; ++i) {
    out += kHex[mac[i] >> 4];
    out += kHex[mac[i] & 15];
  }
  return out;
}

}  // namespace

std::string hello_credential(std::string_view session_id, std::string_view data_token,
                             std::span<const std::uint8_t, 32> public_key,
                             std::span<const std::uint8_t, 16> nonce) {
  return std::string(session_id) + ":" + hello_proof(data_token, public_key, nonce);
}

bool split_hello_credential(std::string_view credential, std::string& session_id,
                            std::string& proof) {
  auto colon = credential.find(':');
  if (colon == std::string_view::npos || colon == 0 || colon + 1 >= credential.size()) return false;
  session_id = std::string(credential.substr(0, colon));
  proof = std::string(credential.substr(colon + 1));
  return true;
}

bool check_hello_proof(std::string_view proof, std::string_view data_token,
                       std::span<const std::uint8_t, 32> public_key,
                       std::span<const std::uint8_t, 16> nonce) {
  std::string want = hello_proof(data_token, public_key, nonce);
  if (want.empty() || want.size() != proof.size()) return false;
  return CRYPTO_memcmp(want.data(), proof.data(), want.size()) == 0;
}

}  // namespace xfer::protocol
