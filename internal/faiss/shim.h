// C interface of the FAISS shim. Only C types cross the boundary so that cgo
// never sees C++; every function reports failure through its return code and
// a caller-owned message buffer instead of letting an exception escape.
#ifndef POI_FAISS_SHIM_H
#define POI_FAISS_SHIM_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

typedef struct poi_index poi_index;

enum { POI_KIND_FLAT = 1, POI_KIND_HNSW = 2 };

// All functions returning int return 0 on success and -1 on failure, with a
// NUL-terminated message written to err (at most errlen bytes).
// nthreads > 0 sets the OpenMP thread count for the duration of the call.

int poi_new_flat_ip(int d, poi_index** out, char* err, size_t errlen);
int poi_new_hnsw_ip(int d, int m, int ef_construction, int ef_search,
                    poi_index** out, char* err, size_t errlen);
void poi_free(poi_index* ix);

// stamps (n values, or NULL for zeros) are kept per vector by HNSW indexes
// and ignored by flat ones.
int poi_add(poi_index* ix, int64_t n, const float* x, const int64_t* ids,
            const int64_t* stamps, int nthreads, char* err, size_t errlen);
// ef > 0 overrides the HNSW efSearch for this call only (ignored for flat).
int poi_search(poi_index* ix, int64_t n, const float* x, int64_t k,
               float* distances, int64_t* labels, int ef, int nthreads,
               char* err, size_t errlen);
// Exact search restricted to the given ids (unknown ids are skipped); writes
// up to k results best first and their number to found.
int poi_search_ids(const poi_index* ix, const float* x, int64_t nids,
                   const int64_t* ids, int64_t k, float* distances,
                   int64_t* labels, int64_t* found, char* err, size_t errlen);
// Sets the stamps of the given ids (HNSW only; unknown ids are skipped) and
// writes how many were set.
int poi_set_stamps(poi_index* ix, int64_t n, const int64_t* ids,
                   const int64_t* stamps, int64_t* set, char* err,
                   size_t errlen);
// Graph search of an HNSW index among the vectors whose stamp lies in
// [lo, hi]: the walk visits every node but only selected ones can be
// results, so the filter costs one compare per visited node. ef is the
// beam width of this call (at least k). Writes up to k results best first
// and their number to found.
int poi_search_hnsw_range(poi_index* ix, const float* x, int64_t lo,
                          int64_t hi, int64_t k, int ef, float* distances,
                          int64_t* labels, int64_t* found, char* err,
                          size_t errlen);
int poi_remove(poi_index* ix, int64_t n, const int64_t* ids, int64_t* removed,
               char* err, size_t errlen);
int64_t poi_ntotal(const poi_index* ix);
int poi_kind(const poi_index* ix);
int poi_dim(const poi_index* ix);
int poi_set_ef_search(poi_index* ix, int ef, char* err, size_t errlen);
int poi_get_hnsw_params(const poi_index* ix, int* m, int* ef_construction,
                        int* ef_search);
int poi_export(const poi_index* ix, float* x, int64_t* ids, char* err,
               size_t errlen);
// Copies the stored vectors of ids into x (n*d floats); unknown ids fail.
int poi_reconstruct(const poi_index* ix, int64_t n, const int64_t* ids,
                    float* x, char* err, size_t errlen);
int poi_write(const poi_index* ix, const char* fname, char* err, size_t errlen);
int poi_read(const char* fname, poi_index** out, char* err, size_t errlen);

#ifdef __cplusplus
}
#endif

#endif
