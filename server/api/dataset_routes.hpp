#pragma once
// Datasets for CI (#7): POST /v1/datasets (submitter) creates the next version of a team's
// dataset from completed jobs, built in the background; GET /v1/datasets and
// GET /v1/datasets/{name}/versions/{version|latest} (viewer) list them and give a version's
// manifest (counts, label counts, vendor mix, the items.jsonl file's bytes, rows and sha256).
#include "datasets/file_cache.hpp"
#include "db/pool.hpp"
#include "http/router.hpp"

namespace labelbroker::api {

// files: built versions on local disk, read instead of the database when present (may be null).
void register_dataset_routes(http::Router& router, db::ConnectionPool& pool, const datasets::FileCache* files = nullptr);

}  // namespace labelbroker::api
