#include "tests/support/redis_server.h"

#include <arpa/inet.h>
#include <fcntl.h>
#include <sys/file.h>
#include <netinet/in.h>
#include <signal.h>
#include <spawn.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <cstdlib>
#include <filesystem>
#include <random>
#include <thread>

#include "absl/strings/str_cat.h"

extern char** environ;

namespace slotpilot::testing {
namespace {

bool CanBind(int port) {
  int fd = socket(AF_INET, SOCK_STREAM, 0);
  if (fd < 0) return false;
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_port = htons(static_cast<uint16_t>(port));
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  bool ok = bind(fd, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)) == 0;
  close(fd);
  return ok;
}

// Takes the same lock file the Python harness (tests/integration/harness.py) takes for a port, so
// concurrent test processes never pick the same port. The lock is held until this process exits.
bool LockPort(int port) {
  mkdir("/tmp/slotpilot-ports", 0777);
  std::string path = absl::StrCat("/tmp/slotpilot-ports/", port, ".lock");
  int fd = open(path.c_str(), O_RDWR | O_CREAT | O_CLOEXEC, 0666);
  if (fd < 0) return true;  // no lock directory: fall back to the bind probe alone
  if (flock(fd, LOCK_EX | LOCK_NB) != 0) {
    close(fd);
    return false;
  }
  return true;  // fd intentionally kept open: the lock lives as long as the process
}

}  // namespace

absl::StatusOr<int> PickFreePortPair(int low, int high) {
  std::mt19937 rng(std::random_device{}() ^ static_cast<unsigned>(getpid()));
  std::uniform_int_distribution<int> dist(low, high - 1);
  for (int attempt = 0; attempt < 200; ++attempt) {
    int port = dist(rng);
    if (!CanBind(port) || !CanBind(port + 10000)) continue;
    if (LockPort(port) && LockPort(port + 10000)) return port;
  }
  return absl::UnavailableError("no free loopback port pair found");
}

absl::StatusOr<std::unique_ptr<RedisServer>> RedisServer::Start(RedisServerOptions options) {
  for (int attempt = 0; attempt < 5; ++attempt) {
    absl::StatusOr<int> port = PickFreePortPair();
    if (!port.ok()) return port.status();
    std::string dir = std::filesystem::temp_directory_path() /
                      absl::StrCat("slotpilot-redis-", getpid(), "-", *port);
    std::filesystem::create_directories(dir);
    std::vector<std::string> args = {"redis-server", "--port", std::to_string(*port),
                                     "--bind", "127.0.0.1", "--dir", dir, "--save", "",
                                     "--appendonly", "no", "--daemonize", "no",
                                     "--logfile", dir + "/redis.log"};
    if (options.cluster_enabled) {
      for (const char* a : {"--cluster-enabled", "yes", "--cluster-config-file", "nodes.conf"}) {
        args.push_back(a);
      }
    }
    args.insert(args.end(), options.extra_args.begin(), options.extra_args.end());
    std::vector<char*> argv;
    for (std::string& a : args) argv.push_back(a.data());
    argv.push_back(nullptr);
    pid_t pid = 0;
    if (posix_spawnp(&pid, "redis-server", nullptr, nullptr, argv.data(), environ) != 0) {
      return absl::InternalError("cannot spawn redis-server (is redis-server installed?)");
    }
    std::unique_ptr<RedisServer> server(new RedisServer(*port, pid, dir));
    for (int i = 0; i < 100; ++i) {  // up to 5 s for the server to answer PING
      if (server->Reaped()) break;  // most likely lost the port race: try another
      auto client = server->Connect();
      if (client.ok()) {
        auto pong = (*client)->Command({"PING"});
        if (pong.ok() && !pong->is_error()) return server;
      }
      std::this_thread::sleep_for(std::chrono::milliseconds(50));
    }
  }
  return absl::UnavailableError("redis-server did not start");
}

bool RedisServer::Reaped() {
  if (!reaped_ && waitpid(pid_, nullptr, WNOHANG) == pid_) reaped_ = true;
  return reaped_;
}

RedisServer::~RedisServer() {
  if (!Reaped()) {
    kill(pid_, SIGTERM);
    for (int i = 0; i < 100 && !Reaped(); ++i) {
      std::this_thread::sleep_for(std::chrono::milliseconds(50));
    }
    if (!Reaped()) {
      kill(pid_, SIGKILL);
      waitpid(pid_, nullptr, 0);
    }
  }
  std::error_code ec;
  std::filesystem::remove_all(dir_, ec);
}

absl::StatusOr<std::unique_ptr<migration::RedisClient>> RedisServer::Connect() const {
  return migration::RedisClient::Connect("127.0.0.1", port_);
}

}  // namespace slotpilot::testing
