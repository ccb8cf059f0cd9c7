#include "api/routes.hpp"

#include "api/admin_routes.hpp"
#include "api/dataset_routes.hpp"
#include "api/dispatch_routes.hpp"
#include "api/errors.hpp"
#include "api/gold_routes.hpp"
#include "api/health_routes.hpp"
#include "api/job_routes.hpp"
#include "api/metrics_routes.hpp"
#include "api/ops_routes.hpp"
#include "api/score_routes.hpp"
#include "api/vendor_routes.hpp"

namespace labelbroker::api {

void register_api(http::Router& router, const ApiDependencies& deps) {
  router.set_exception_mapper(map_exception);
  register_health_routes(router, {deps.pool, deps.lifecycle, deps.expected_schema_version});
  register_vendor_routes(router, deps.pool, deps.vendors, deps.dispatch);
  register_score_routes(router, deps.pool, deps.vendors, deps.dispatch, deps.quality);
  register_job_routes(router, deps.pool, deps.vendors, deps.jobs);
  register_gold_routes(router, deps.pool, deps.jobs);
  register_dispatch_routes(router, deps.pool, deps.dispatch);
  register_dataset_routes(router, deps.pool, deps.dataset_files);
  register_admin_routes(router, deps.pool);
  register_ops_routes(router);
  if (deps.metrics) register_metrics_route(router, deps.pool, *deps.metrics);
}

}  // namespace labelbroker::api
