// UCX owners: creation with checked status, destruction in UCX's order, and waits with deadlines.
#include "ucx.hpp"

#include <fmt/format.h>
#include <fmt/ranges.h>

#include <algorithm>
#include <cstring>
#include <thread>

namespace kvstream::transport {

Status ucx_status(ucs_status_t s, const char* call) {
  if (s == UCS_OK) return Status::ok();
  const Errc code = s == UCS_ERR_NO_MEMORY || s == UCS_ERR_NO_RESOURCE ? Errc::resource_exhausted
                    : s == UCS_ERR_TIMED_OUT                           ? Errc::timeout
                    : s == UCS_ERR_CONNECTION_RESET || s == UCS_ERR_ENDPOINT_TIMEOUT ||
                            s == UCS_ERR_UNREACHABLE || s == UCS_ERR_REJECTED ||
                            s == UCS_ERR_NOT_CONNECTED
                        ? Errc::disconnected
                    : s == UCS_ERR_UNSUPPORTED || s == UCS_ERR_NO_DEVICE ? Errc::unsupported
                                                                         : Errc::io_error;
  return Status(code, fmt::format("{}: {}", call, ucs_status_string(s)));
}

Expected<std::shared_ptr<UcxContext>> UcxContext::create() {
  ucp_config_t* config = nullptr;
  KVS_RETURN_IF_ERROR(ucx_status(ucp_config_read(nullptr, nullptr, &config), "ucp_config_read"));
  ucp_params_t params{};
  params.field_mask = UCP_PARAM_FIELD_FEATURES | UCP_PARAM_FIELD_MT_WORKERS_SHARED;
  params.features = UCP_FEATURE_TAG | UCP_FEATURE_AM | UCP_FEATURE_RMA;
  params.mt_workers_shared = 0;
  std::shared_ptr<UcxContext> c(new UcxContext());
  const ucs_status_t s = ucp_init(&params, config, &c->h_);
  ucp_config_release(config);
  KVS_RETURN_IF_ERROR(ucx_status(s, "ucp_init"));
  return c;
}

MemoryTypes memory_types_from_mask(std::uint64_t mask) {
  const auto has = [mask](ucs_memory_type_t t) { return (mask & (std::uint64_t{1} << t)) != 0; };
  MemoryTypes m;
  m.host = has(UCS_MEMORY_TYPE_HOST);
  m.cuda = has(UCS_MEMORY_TYPE_CUDA);
  m.cuda_managed = has(UCS_MEMORY_TYPE_CUDA_MANAGED);
  m.rocm = has(UCS_MEMORY_TYPE_ROCM);
  return m;
}

std::string MemoryTypes::describe() const {
  std::vector<std::string_view> names;
  if (host) names.push_back("host");
  if (cuda) names.push_back("cuda");
  if (cuda_managed) names.push_back("cuda-managed");
  if (rocm) names.push_back("rocm");
  return names.empty() ? std::string("none") : fmt::format("{}", fmt::join(names, ", "));
}

Expected<MemoryTypes> UcxContext::memory_types() const {
  ucp_context_attr_t attr{};
  attr.field_mask = UCP_ATTR_FIELD_MEMORY_TYPES;
  KVS_RETURN_IF_ERROR(ucx_status(ucp_context_query(h_, &attr), "ucp_context_query"));
  return memory_types_from_mask(attr.memory_types);
}

UcxContext::~UcxContext() {
  if (h_ != nullptr) ucp_cleanup(h_);
}

Expected<std::shared_ptr<UcxWorker>> UcxWorker::create(std::shared_ptr<UcxContext> context) {
  ucp_worker_params_t params{};
  params.field_mask = UCP_WORKER_PARAM_FIELD_THREAD_MODE;
  params.thread_mode = UCS_THREAD_MODE_SINGLE;
  std::shared_ptr<UcxWorker> w(new UcxWorker());
  w->context_ = std::move(context);
  KVS_RETURN_IF_ERROR(
      ucx_status(ucp_worker_create(w->context_->get(), &params, &w->h_), "ucp_worker_create"));
  return w;
}

UcxWorker::~UcxWorker() {
  if (h_ != nullptr) ucp_worker_destroy(h_);
}

Expected<std::vector<std::byte>> UcxWorker::address() const {
  ucp_address_t* address = nullptr;
  std::size_t length = 0;
  KVS_RETURN_IF_ERROR(
      ucx_status(ucp_worker_get_address(h_, &address, &length), "ucp_worker_get_address"));
  std::vector<std::byte> out(length);
  std::memcpy(out.data(), address, length);
  ucp_worker_release_address(h_, address);
  return out;
}

Status UcxWorker::wait(ucs_status_ptr_t request, Clock::time_point deadline, const char* what,
                       Poll poll) {
  if (request == nullptr) return Status::ok();  // completed in place
  if (UCS_PTR_IS_ERR(request)) return ucx_status(UCS_PTR_STATUS(request), what);
  ucs_status_t s = UCS_INPROGRESS;
  bool timed_out = false;
  // Polls while there is work; when a round finds none, `backoff` goes from yielding to sleeps
  // of up to 100 us, so that an idle wait does not hold a core.
  unsigned idle = 0;
  while ((s = ucp_request_check_status(request)) == UCS_INPROGRESS) {
    if (progress()) {
      idle = 0;
      continue;
    }
    if (!timed_out && Clock::now() >= deadline) {
      // Cancelled requests complete with UCS_ERR_CANCELED after some progress.
      timed_out = true;
      ucp_request_cancel(h_, request);
      continue;
    }
    if (poll == Poll::busy || ++idle < 64) {
      if (poll == Poll::backoff) std::this_thread::yield();
    } else {
      std::this_thread::sleep_for(std::chrono::microseconds(std::min(idle - 63, 100u)));
    }
  }
  ucp_request_free(request);
  if (timed_out) return Status(Errc::timeout, fmt::format("{}: deadline passed", what));
  return ucx_status(s, what);
}

Expected<UcxThread> open_ucx_thread() {
  KVS_ASSIGN_OR_RETURN(auto context, UcxContext::create());
  KVS_ASSIGN_OR_RETURN(auto worker, UcxWorker::create(context));
  return UcxThread{std::move(context), std::move(worker)};
}

void UcxEndpoint::on_error(void* arg, ucp_ep_h, ucs_status_t status) {
  auto* self = static_cast<UcxEndpoint*>(arg);
  self->failure_ = Status(Errc::disconnected,
                          fmt::format("the peer is gone (UCX: {})", ucs_status_string(status)));
}

Expected<std::unique_ptr<UcxEndpoint>> UcxEndpoint::connect(std::shared_ptr<UcxWorker> worker,
                                                            std::span<const std::byte> address,
                                                            ErrorMode mode) {
  std::unique_ptr<UcxEndpoint> ep(new UcxEndpoint());
  ep->worker_ = std::move(worker);
  ep->mode_ = mode;
  ucp_ep_params_t params{};
  params.field_mask = UCP_EP_PARAM_FIELD_REMOTE_ADDRESS | UCP_EP_PARAM_FIELD_ERR_HANDLING_MODE |
                      UCP_EP_PARAM_FIELD_ERR_HANDLER;
  params.address = reinterpret_cast<const ucp_address_t*>(address.data());
  params.err_mode =
      mode == ErrorMode::peer ? UCP_ERR_HANDLING_MODE_PEER : UCP_ERR_HANDLING_MODE_NONE;
  params.err_handler.cb = &UcxEndpoint::on_error;
  params.err_handler.arg = ep.get();  // stable: the endpoint is heap-allocated and never moves
  KVS_RETURN_IF_ERROR(
      ucx_status(ucp_ep_create(ep->worker_->get(), &params, &ep->h_), "ucp_ep_create"));
  return ep;
}

Status UcxEndpoint::flush(Clock::time_point deadline) {
  ucp_request_param_t param{};
  const ucs_status_ptr_t request = ucp_ep_flush_nbx(h_, &param);
  if (request == nullptr) return Status::ok();
  if (UCS_PTR_IS_ERR(request)) return ucx_status(UCS_PTR_STATUS(request), "ucp_ep_flush_nbx");
  // Not UcxWorker::wait: a flush cannot be cancelled, so a silent peer would hold it forever.
  ucs_status_t s = UCS_INPROGRESS;
  while ((s = ucp_request_check_status(request)) == UCS_INPROGRESS) {
    if (worker_->progress()) continue;
    if (Clock::now() >= deadline) {
      ucp_request_free(request);  // UCX releases it when it completes
      return Status(Errc::timeout, "UCX endpoint wireup: the peer did not answer in time");
    }
    std::this_thread::yield();
  }
  ucp_request_free(request);
  return ucx_status(s, "UCX endpoint wireup");
}

UcxEndpoint::~UcxEndpoint() {
  close(!failure_.is_ok());
}

void UcxEndpoint::abort(Status why) {
  if (failure_.is_ok()) failure_ = std::move(why);
  close(true);
}

void UcxEndpoint::close(bool force) {
  if (h_ == nullptr) return;
  // After ucp_ep_close_nbx the endpoint is gone whatever the request's outcome: wait up to a
  // second for the flush (or, once the peer failed, the forced close), then let UCX release the
  // request whenever it completes.
  ucp_request_param_t param{};
  param.op_attr_mask = UCP_OP_ATTR_FIELD_FLAGS;
  param.flags = force ? UCP_EP_CLOSE_FLAG_FORCE : 0;
  ucs_status_ptr_t request = ucp_ep_close_nbx(h_, &param);
  h_ = nullptr;
  if (request == nullptr || UCS_PTR_IS_ERR(request)) return;
  const auto deadline = Clock::now() + std::chrono::seconds(1);
  while (ucp_request_check_status(request) == UCS_INPROGRESS && Clock::now() < deadline) {
    if (!worker_->progress()) std::this_thread::yield();
  }
  ucp_request_free(request);
}

Expected<std::unique_ptr<MemoryRegion>> MemoryRegion::map(std::shared_ptr<UcxContext> context,
                                                          void* address, std::size_t length) {
  std::unique_ptr<MemoryRegion> r(new MemoryRegion());
  r->context_ = std::move(context);
  ucp_mem_map_params_t params{};
  params.field_mask = UCP_MEM_MAP_PARAM_FIELD_ADDRESS | UCP_MEM_MAP_PARAM_FIELD_LENGTH;
  params.address = address;
  params.length = length;
  KVS_RETURN_IF_ERROR(ucx_status(ucp_mem_map(r->context_->get(), &params, &r->h_), "ucp_mem_map"));
  r->address_ = address;
  r->length_ = length;
  return r;
}

MemoryRegion::~MemoryRegion() {
  if (h_ != nullptr) ucp_mem_unmap(context_->get(), h_);
}

Expected<std::vector<std::byte>> MemoryRegion::packed_key() const {
  void* buffer = nullptr;
  std::size_t size = 0;
  KVS_RETURN_IF_ERROR(
      ucx_status(ucp_rkey_pack(context_->get(), h_, &buffer, &size), "ucp_rkey_pack"));
  std::vector<std::byte> out(size);
  std::memcpy(out.data(), buffer, size);
  ucp_rkey_buffer_release(buffer);
  return out;
}

Expected<std::unique_ptr<RemoteKey>> RemoteKey::unpack(const UcxEndpoint& ep,
                                                       std::span<const std::byte> packed) {
  std::unique_ptr<RemoteKey> k(new RemoteKey());
  KVS_RETURN_IF_ERROR(
      ucx_status(ucp_ep_rkey_unpack(ep.get(), packed.data(), &k->h_), "ucp_ep_rkey_unpack"));
  return k;
}

RemoteKey::~RemoteKey() {
  if (h_ != nullptr) ucp_rkey_destroy(h_);
}

}  // namespace kvstream::transport
