// Test support: a real Redis Cluster of N masters (default 3) on loopback, built by hand the way
// `redis-cli --cluster create` does it, plus helpers to put slots into the states MIGRATION.md
// describes (half-open, interrupted reshard, unclaimed, unassigned, ...).
//
//   auto cluster = slotpilot::testing::TestCluster::Start();   // ~2.5 s: nodes up, meet, slots
//   ASSERT_TRUE(cluster.ok()) << cluster.status();
//   TestCluster& c = **cluster;
//   uint16_t slot = 100;                    // owned by node 0 (slots are split evenly, in order)
//   ASSERT_TRUE(c.FillSlot(slot, 20).ok());  // 20 keys "{tag}:0".."{tag}:19" on the owner
//   ASSERT_TRUE(c.SetImporting(1, slot, 0).ok());  // node 1: [100-<-node0]
//   ASSERT_TRUE(c.SetMigrating(0, slot, 1).ok());  // node 0: [100->-node1]
//   ASSERT_TRUE(c.MigrateKeys(0, 1, slot, 5).ok()); // 5 keys moved: an interrupted reshard (S3)
//
// Building: Start() starts the servers (cluster-enabled, each with its own temp dir), gives node i
// configEpoch i+1 (CLUSTER SET-CONFIG-EPOCH, as redis-cli create does, so no epoch collision has
// to be resolved by gossip), has node 0 MEET the others, gives node i the i-th of N even slot
// ranges (ADDSLOTSRANGE), then waits (bounded by ready_timeout) until every node says
// cluster_state:ok, knows exactly N nodes, flags none of them fail/fail?/handshake, and all nodes
// agree on the owner of every slot. Nodes are addressed by index 0..N-1 everywhere.
//
// Every helper is bounded (command timeouts from the clients, explicit timeouts on waits) and
// returns a Status instead of asserting, so it can be used from SetUpTestSuite and from threads.
// Helpers that take a node index talk to that node only; nothing is routed or redirected.
//
// Thread-safety: the per-node clients returned by client(i) are not thread-safe. A test that
// drives the cluster from a second thread (e.g. a slow reshard) must use its own connection
// (Connect(i)), or the *On variants that take a client.
#ifndef SLOTPILOT_TESTS_SUPPORT_TEST_CLUSTER_H_
#define SLOTPILOT_TESTS_SUPPORT_TEST_CLUSTER_H_

#include <chrono>
#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "migration/cluster_view.h"
#include "migration/redis_client.h"
#include "protocol/resp.h"
#include "protocol/topology.h"
#include "tests/support/redis_server.h"

namespace slotpilot::testing {

struct TestClusterOptions {
  int masters = 3;
  // Passed to every redis-server, e.g. {"--cluster-require-full-coverage", "no"} or
  // {"--maxmemory", "20mb"}. "--cluster-node-timeout" defaults to 5000 (see below) unless given.
  std::vector<std::string> extra_args;
  int cluster_node_timeout_ms = 5000;
  std::chrono::milliseconds ready_timeout{20000};
};

class TestCluster {
 public:
  static absl::StatusOr<std::unique_ptr<TestCluster>> Start(TestClusterOptions options = {});
  ~TestCluster();  // stops every server still running
  TestCluster(const TestCluster&) = delete;
  TestCluster& operator=(const TestCluster&) = delete;

  // --- Nodes -----------------------------------------------------------------------------------
  // Every node started: the masters are 0..masters()-1, replicas added later come after them.
  int size() const { return static_cast<int>(nodes_.size()); }
  int masters() const { return masters_; }
  int port(int i) const { return nodes_[i].port; }
  const std::string& id(int i) const { return nodes_[i].id; }
  migration::Endpoint endpoint(int i) const;
  std::string address(int i) const;                // "127.0.0.1:port"
  std::vector<migration::Endpoint> Seeds() const;  // every node's endpoint, in index order
  // The slots master i was given at start: [first, last].
  protocol::SlotRange InitialRange(int i) const;
  // Starts one more node, has it join and replicate `master`, and waits (bounded) until its
  // replication link is up and every node knows it. Returns its index.
  absl::StatusOr<int> AddReplica(int master,
                                 std::chrono::milliseconds timeout = std::chrono::seconds(20));
  // Index of the node with this id, -1 when none.
  int IndexOfId(std::string_view id) const;

  // This fixture's connection to node i (reconnected when broken). Not thread-safe.
  absl::StatusOr<migration::RedisClient*> client(int i);
  // A fresh connection to node i, for another thread.
  absl::StatusOr<std::unique_ptr<migration::RedisClient>> Connect(int i) const;
  // Stops node i (SIGTERM, then SIGKILL after 5 s); it stays in the other nodes' views.
  void StopNode(int i);
  // SIGSTOP / SIGCONT: node i stops answering without closing its sockets (an unresponsive node,
  // like a master blocked inside a long MIGRATE). Always Resume before the cluster is destroyed.
  absl::Status PauseNode(int i);
  absl::Status ResumeNode(int i);
  bool running(int i) const { return nodes_[i].server != nullptr; }

  // --- Commands --------------------------------------------------------------------------------
  // Sends a command to node i. Transport failures are a non-OK status; an error reply is returned
  // as a value (is_error()).
  absl::StatusOr<protocol::RespValue> Command(int i, const std::vector<std::string>& args);
  // Same, but an error reply becomes a FailedPrecondition status carrying the error text.
  absl::StatusOr<protocol::RespValue> Must(int i, const std::vector<std::string>& args);

  // --- Slot state (MIGRATION.md A.1, A.4) ------------------------------------------------------
  // Owner of `slot` in node `view`'s own CLUSTER NODES: a node index, or -1 when unassigned there
  // (or owned by a node this fixture did not start).
  absl::StatusOr<int> OwnerOf(uint16_t slot, int view = 0);
  absl::Status SetMigrating(int node, uint16_t slot, int destination);  // SETSLOT s MIGRATING
  absl::Status SetImporting(int node, uint16_t slot, int source);       // SETSLOT s IMPORTING
  absl::Status SetStable(int node, uint16_t slot);                      // SETSLOT s STABLE
  absl::Status SetNode(int node, uint16_t slot, int owner);             // SETSLOT s NODE <owner>
  absl::Status AddSlot(int node, uint16_t slot);                        // CLUSTER ADDSLOTS s
  absl::Status DelSlot(int node, uint16_t slot);                        // CLUSTER DELSLOTS s
  // Closes every open marker of `slot` on every running master (SETSLOT STABLE), to reset a slot
  // after a test. Does not move keys or change owners.
  absl::Status StabilizeSlot(uint16_t slot);
  // Puts `slot` back to a clean state owned by `owner`: closes every marker, moves keys found on
  // other nodes home (SETSLOT IMPORTING <owner> on that node, MIGRATE, STABLE: the trick
  // redis-cli fix uses), and fails unless `owner` claims the slot in its own view afterwards.
  // A key present on both sides keeps the owner's copy (no REPLACE: BUSYKEY is reported).
  absl::Status ResetSlot(uint16_t slot, int owner);

  // --- Keys ------------------------------------------------------------------------------------
  // A hash tag whose slot is `slot` (found by trying strings against protocol::KeyHashSlot; the
  // table for all 16384 slots is built once per process, ~0.1 s).
  static const std::string& HashTagFor(uint16_t slot);
  // The i-th test key of `slot`: "{<tag>}:<i>".
  static std::string KeyInSlot(uint16_t slot, int i);
  // Writes keys KeyInSlot(slot, first) .. KeyInSlot(slot, first + n - 1) with values of
  // `value_size` bytes on `node` (pipelined). With `asking`, each SET is preceded by ASKING (to
  // write on an importing node: stray writes, S2b). Fails on any error reply (e.g. MOVED).
  absl::Status WriteKeys(int node, uint16_t slot, int first, int n, size_t value_size = 16,
                         bool asking = false);
  // WriteKeys on the node that owns `slot` in its own view, starting at key 0.
  absl::Status FillSlot(uint16_t slot, int n, size_t value_size = 16);
  // CLUSTER COUNTKEYSINSLOT on node i.
  absl::StatusOr<int64_t> CountKeys(int node, uint16_t slot);
  // Moves up to `n` keys of `slot` from node src to node dst: GETKEYSINSLOT n on src, then one
  // MIGRATE "" KEYS on src. Returns how many keys were moved (0 when src had none). The target
  // must accept RESTORE-ASKING (IMPORTING the slot, or owning it). `on` (optional) is a client to
  // src to use instead of client(src), e.g. from another thread.
  absl::StatusOr<int> MigrateKeys(int src, int dst, uint16_t slot, int n,
                                  migration::RedisClient* on = nullptr);

  // --- Waiting ---------------------------------------------------------------------------------
  // Calls `pred` every `interval` until it returns true or `timeout` passes; true if it did.
  static bool WaitUntil(const std::function<bool()>& pred, std::chrono::milliseconds timeout,
                        std::chrono::milliseconds interval = std::chrono::milliseconds(50));
  // Every running node says cluster_state:ok, knows the same nodes with no fail/fail?/handshake
  // flag, and all agree on every slot's owner. Returns the last mismatch on timeout.
  absl::Status WaitForAgreement(std::chrono::milliseconds timeout);
  // The same check, once. `why` receives the first mismatch.
  bool Agreed(std::string* why = nullptr);

  // --- Comparing states ------------------------------------------------------------------------
  // Node i's CLUSTER NODES with the volatile fields (ping-sent, pong-recv, link-state) dropped and
  // lines sorted, so two calls compare equal when nothing about slots, markers, flags, epochs or
  // roles changed ("did the watcher touch the cluster?").
  absl::StatusOr<std::string> StableNodesText(int i);
  // StableNodesText of every running node, joined.
  absl::StatusOr<std::string> StableClusterText();

 private:
  struct Node {
    std::unique_ptr<RedisServer> server;
    std::unique_ptr<migration::RedisClient> client;
    int port = 0;
    std::string id;
  };
  TestCluster() = default;
  absl::Status Build(const TestClusterOptions& options);
  absl::StatusOr<int> StartNode();  // one more server in nodes_, id known
  bool IsMaster(int i);             // node i's own view says master

  RedisServerOptions server_options_;
  int masters_ = 0;
  std::vector<Node> nodes_;
};

}  // namespace slotpilot::testing

#endif  // SLOTPILOT_TESTS_SUPPORT_TEST_CLUSTER_H_
