#include "proxy/script_cache.h"

#include <openssl/evp.h>

#include "protocol/strings.h"

namespace slotpilot::proxy {

std::string ScriptCache::Sha1Hex(std::string_view body) {
  unsigned char digest[EVP_MAX_MD_SIZE];
  unsigned int length = 0;
  if (EVP_Digest(body.data(), body.size(), digest, &length, EVP_sha1(), nullptr) != 1) return {};
  static constexpr char kHex[] = "0123456789abcdef";
  std::string hex(2 * length, '0');
  for (unsigned int i = 0; i < length; ++i) {
    hex[2 * i] = kHex[digest[i] >> 4];
    hex[2 * i + 1] = kHex[digest[i] & 0xf];
  }
  return hex;
}

void ScriptCache::Remember(std::string_view body) {
  if (body.size() > max_bytes_) return;
  std::string sha = Sha1Hex(body);
  if (sha.empty()) return;
  std::lock_guard<std::mutex> lock(mu_);
  if (bodies_.contains(sha)) return;
  while (!order_.empty() && bytes_ + body.size() > max_bytes_) {
    auto oldest = bodies_.find(order_.front());
    bytes_ -= oldest->second.size();
    bodies_.erase(oldest);
    order_.pop_front();
    generation_.fetch_add(1, std::memory_order_release);
  }
  bytes_ += body.size();
  order_.push_back(sha);
  bodies_.emplace(std::move(sha), std::string(body));
}

std::optional<std::string> ScriptCache::Find(std::string_view sha) const {
  std::string key = ToLower(sha);
  std::lock_guard<std::mutex> lock(mu_);
  auto it = bodies_.find(key);
  if (it == bodies_.end()) return std::nullopt;
  return it->second;
}

bool ScriptCache::Contains(std::string_view sha) const {
  std::string key = ToLower(sha);
  std::lock_guard<std::mutex> lock(mu_);
  return bodies_.contains(key);
}

void ScriptCache::Forget(std::string_view sha) {
  std::string key = ToLower(sha);
  std::lock_guard<std::mutex> lock(mu_);
  auto it = bodies_.find(key);
  if (it == bodies_.end()) return;
  bytes_ -= it->second.size();
  bodies_.erase(it);
  for (auto o = order_.begin(); o != order_.end(); ++o) {
    if (*o == key) {
      order_.erase(o);
      break;
    }
  }
  generation_.fetch_add(1, std::memory_order_release);
}

void ScriptCache::Clear() {
  std::lock_guard<std::mutex> lock(mu_);
  bodies_.clear();
  order_.clear();
  bytes_ = 0;
  generation_.fetch_add(1, std::memory_order_release);
}

size_t ScriptCache::bytes() const {
  std::lock_guard<std::mutex> lock(mu_);
  return bytes_;
}

size_t ScriptCache::size() const {
  std::lock_guard<std::mutex> lock(mu_);
  return bodies_.size();
}

}  // namespace slotpilot::proxy
