#pragma once
// Data-channel sealing (docs/protocol.md, "Encryption"): X25519 key agreement
// in the Hello exchange, HKDF-SHA256 key derivation, AES-256-GCM per frame
// with implicit counter nonces. All on OpenSSL 3.

#include <array>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <span>
#include <string>
#include <string_view>

#include "xfer/core/result.hpp"

namespace xfer::protocol {

// An ephemeral X25519 key pair.
class KeyPair {
 public:
  static Result<KeyPair> generate();
  const std::array<std::uint8_t, 32>& public_key() const { return public_; }
  // The 32-byte shared secret with the peer's public key.
  Result<std::array<std::uint8_t, 32>> agree(std::span<const std::uint8_t, 32> peer) const;
  KeyPair(KeyPair&&) noexcept;
  KeyPair& operator=(KeyPair&&) noexcept;
  ~KeyPair();

 private:
  KeyPair() = default;
  void* pkey_ = nullptr;  // EVP_PKEY*
  std::array<std::uint8_t, 32> public_{};
};

// Keys for one connection: one per direction.
struct SessionKeys {
  std::array<std::uint8_t, 32> client_to_server{};
  std::array<std::uint8_t, 32> server_to_client{};
};
// HKDF-SHA256(ikm = shared secret, salt = SHA-256(data_token) ||
// client_nonce || server_nonce, info = "xfer/1 c2s" and "xfer/1 s2c").
Result<SessionKeys> derive_keys(std::span<const std::uint8_t, 32> shared,
                                std::string_view data_token,
                                std::span<const std::uint8_t, 16> client_nonce,
                                std::span<const std::uint8_t, 16> server_nonce);

// AES-256-GCM for one direction of one connection. The nonce is the 64-bit
// frame counter (little-endian) followed by 4 zero bytes; it increments on
// every seal/open, so frames must be opened in the order they were sealed.
// Not thread-safe: the connection's send (or receive) side owns one.
class FrameCipher {
 public:
  static Result<FrameCipher> create(std::span<const std::uint8_t, 32> key);
  // Encrypts `data` in place and writes the tag; `aad` is the frame header.
  Status seal(std::span<const std::byte> aad, std::span<std::byte> data,
              std::span<std::byte, 16> tag);
  // The same, a piece at a time, so a large frame is sealed through a small
  // buffer: seal_begin(aad), seal_update(piece)... in payload order, then
  // seal_end(tag). Nothing else may use the cipher in between.
  Status seal_begin(std::span<const std::byte> aad);
  Status seal_update(std::span<std::byte> data);
  Status seal_end(std::span<std::byte, 16> tag);
  // Decrypts in place; kCorrupt when the tag does not verify.
  Status open(std::span<const std::byte> aad, std::span<std::byte> data,
              std::span<const std::byte, 16> tag);
  std::uint64_t counter() const { return counter_; }
  FrameCipher(FrameCipher&&) noexcept;
  FrameCipher& operator=(FrameCipher&&) noexcept;
  ~FrameCipher();

 private:
  FrameCipher() = default;
  void* ctx_ = nullptr;  // EVP_CIPHER_CTX*
  std::uint64_t counter_ = 0;
};

// What a Hello carries instead of the data token (docs/protocol.md,
// "Handshake"): "<session_id>:<proof>", proof = lowercase hex
// HMAC-SHA256(key = data_token, "xfer/1 hello" || public_key || nonce).
// The data token itself never travels on the data connection.
std::string hello_credential(std::string_view session_id, std::string_view data_token,
                             std::span<const std::uint8_t, 32> public_key,
                             std::span<const std::uint8_t, 16> nonce);
// Splits a credential into session id and proof; false when malformed.
bool split_hello_credential(std::string_view credential, std::string& session_id,
                            std::string& proof);
// Recomputes the proof and compares in constant time.
bool check_hello_proof(std::string_view proof, std::string_view data_token,
                       std::span<const std::uint8_t, 32> public_key,
                       std::span<const std::uint8_t, 16> nonce);

// Cryptographically random bytes (RAND_bytes).
Status random_bytes(std::span<std::uint8_t> out);

}  // namespace xfer::protocol
