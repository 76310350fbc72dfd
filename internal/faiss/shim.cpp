// extern "C" shim over the FAISS C++ API. Debian ships FAISS without its C
// API library, so this file is the whole native surface the Go package uses.
// Rules kept by every entry point: no C++ exception crosses into Go (cgo
// cannot unwind through Go frames, the process would abort), and ownership of
// native memory is explicit (poi_free is the only destructor).

#include "shim.h"

#include <omp.h>

#include <cstdio>
#include <algorithm>
#include <cstring>
#include <exception>
#include <new>
#include <stdexcept>
#include <string>
#include <unordered_set>
#include <vector>

#include <faiss/IndexFlat.h>
#include <faiss/IndexHNSW.h>
#include <faiss/IndexIDMap.h>
#include <faiss/impl/IDSelector.h>
#include <faiss/index_io.h>
#include <faiss/utils/distances.h>

struct poi_index {
    faiss::IndexIDMap2* map = nullptr; // owns the inner index
    faiss::IndexHNSW* hnsw = nullptr;  // borrowed view of map->index, or null
    int kind = 0;
    // stamps[pos] is the caller's number for the vector at storage position
    // pos (HNSW only): a range of them is a filter that costs one compare
    // per visited node, with no per-query set to build, and a stamp outside
    // every range is a tombstone (HNSW cannot unlink nodes).
    std::vector<int64_t> stamps;
};

namespace {

void set_err(char* err, size_t errlen, const char* msg) {
    if (err == nullptr || errlen == 0) {
        return;
    }
    std::snprintf(err, errlen, "%s", msg);
}

// ThreadGuard applies a per-call OpenMP thread count. OpenMP keeps the count
// per OS thread and Go moves goroutines between OS threads, so the setting
// must be made on every call and restored afterwards, or it would leak into
// unrelated calls that later run on the same thread.
struct ThreadGuard {
    int prev = 0;
    bool active = false;
    explicit ThreadGuard(int n) {
        if (n > 0) {
            prev = omp_get_max_threads();
            omp_set_num_threads(n);
            active = true;
        }
    }
    ~ThreadGuard() {
        if (active) {
            omp_set_num_threads(prev);
        }
    }
};

// guard runs f and converts any exception into an error code and message.
template <typename F>
int guard(char* err, size_t errlen, F f) {
    try {
        f();
        return 0;
    } catch (const std::bad_alloc&) {
        set_err(err, errlen, "out of memory");
    } catch (const std::exception& e) {
        set_err(err, errlen, e.what());
    } catch (...) {
        set_err(err, errlen, "unknown C++ exception");
    }
    return -1;
}

// check_ids rejects ids already present or repeated within the batch:
// IndexIDMap2 would silently keep both vectors and corrupt its reverse map.
void check_ids(const faiss::IndexIDMap2* map, int64_t n, const int64_t* ids) {
    std::unordered_set<int64_t> seen;
    seen.reserve(static_cast<size_t>(n));
    for (int64_t i = 0; i < n; i++) {
        if (map->rev_map.count(ids[i]) != 0) {
            throw std::runtime_error("duplicate id " + std::to_string(ids[i]) +
                                     ": already in the index");
        }
        if (!seen.insert(ids[i]).second) {
            throw std::runtime_error("duplicate id " + std::to_string(ids[i]) +
                                     " within one add");
        }
    }
}

} // namespace

extern "C" {

// wrap puts an inner index under an IndexIDMap2 that owns it, inside a
// poi_index; the inner index is freed if anything fails on the way.
static poi_index* wrap(faiss::Index* inner, faiss::IndexHNSWFlat* hnsw, int kind) {
    faiss::IndexIDMap2* map = nullptr;
    try {
        map = new faiss::IndexIDMap2(inner);
    } catch (...) {
        delete inner;
        throw;
    }
    map->own_fields = true;
    auto* ix = new (std::nothrow) poi_index;
    if (ix == nullptr) {
        delete map;
        throw std::bad_alloc();
    }
    ix->map = map;
    ix->hnsw = hnsw;
    ix->kind = kind;
    return ix;
}

int poi_new_flat_ip(int d, poi_index** out, char* err, size_t errlen) {
    *out = nullptr;
    return guard(err, errlen, [&] {
        if (d <= 0) {
            throw std::runtime_error("dimension must be positive");
        }
        *out = wrap(new faiss::IndexFlatIP(d), nullptr, POI_KIND_FLAT);
    });
}

int poi_new_hnsw_ip(int d, int m, int ef_construction, int ef_search,
                    poi_index** out, char* err, size_t errlen) {
    *out = nullptr;
    return guard(err, errlen, [&] {
        if (d <= 0 || m < 2 || ef_construction <= 0 || ef_search <= 0) {
            throw std::runtime_error(
                "invalid HNSW parameters (need d>0, M>=2, efConstruction>0, "
                "efSearch>0)");
        }
        auto* hnsw = new faiss::IndexHNSWFlat(d, m, faiss::METRIC_INNER_PRODUCT);
        hnsw->hnsw.efConstruction = ef_construction;
        hnsw->hnsw.efSearch = ef_search;
        *out = wrap(hnsw, hnsw, POI_KIND_HNSW);
    });
}

void poi_free(poi_index* ix) {
    if (ix == nullptr) {
        return;
    }
    try {
        delete ix->map;
    } catch (...) {
        // Destructors of FAISS indexes do not throw; this only keeps the
        // promise that nothing escapes into Go.
    }
    delete ix;
}

int poi_add(poi_index* ix, int64_t n, const float* x, const int64_t* ids,
            const int64_t* stamps, int nthreads, char* err, size_t errlen) {
    return guard(err, errlen, [&] {
        ThreadGuard tg(nthreads);
        check_ids(ix->map, n, ids);
        if (ix->hnsw != nullptr) {
            ix->stamps.reserve(ix->stamps.size() + static_cast<size_t>(n));
        }
        ix->map->add_with_ids(n, x, ids);
        if (ix->hnsw != nullptr) {
            for (int64_t i = 0; i < n; i++) {
                ix->stamps.push_back(stamps != nullptr ? stamps[i] : 0);
            }
        }
    });
}

namespace {

// EfScope sets an HNSW graph's efSearch for one call and restores it, also
// when the call throws. efSearch is shared state of the index: the Go side
// holds the index exclusively whenever ef differs from it, and an equal ef
// writes nothing, so shared searches never race on it.
class EfScope {
  public:
    EfScope(faiss::HNSW& h, int ef) : h_(h), saved_(h.efSearch), set_(ef > 0 && ef != h.efSearch) {
        if (set_) {
            h_.efSearch = ef;
        }
    }
    ~EfScope() {
        if (set_) {
            h_.efSearch = saved_;
        }
    }
    EfScope(const EfScope&) = delete;
    EfScope& operator=(const EfScope&) = delete;

  private:
    faiss::HNSW& h_;
    int saved_;
    bool set_;
};

} // namespace

int poi_search(poi_index* ix, int64_t n, const float* x, int64_t k,
               float* distances, int64_t* labels, int ef, int nthreads,
               char* err, size_t errlen) {
    return guard(err, errlen, [&] {
        ThreadGuard tg(nthreads);
        if (ef > 0 && ix->hnsw != nullptr) {
            // HNSW never returns more than efSearch results, so a k above it
            // needs a wider beam for this call.
            EfScope scope(ix->hnsw->hnsw, ef);
            ix->map->search(n, x, k, distances, labels);
            return;
        }
        ix->map->search(n, x, k, distances, labels);
    });
}

int poi_search_ids(const poi_index* ix, const float* x, int64_t nids,
                   const int64_t* ids, int64_t k, float* distances,
                   int64_t* labels, int64_t* found, char* err, size_t errlen) {
    *found = 0;
    return guard(err, errlen, [&] {
        const faiss::Index* inner =
            ix->hnsw != nullptr ? ix->hnsw->storage : ix->map->index;
        auto* flat = dynamic_cast<const faiss::IndexFlat*>(inner);
        if (flat == nullptr) {
            throw std::runtime_error("index has no flat storage");
        }
        const float* xb = flat->get_xb();
        const size_t d = static_cast<size_t>(flat->d);
        std::vector<std::pair<float, int64_t>> scored;
        scored.reserve(static_cast<size_t>(nids));
        for (int64_t i = 0; i < nids; i++) {
            auto it = ix->map->rev_map.find(ids[i]);
            if (it == ix->map->rev_map.end()) {
                continue;
            }
            scored.emplace_back(
                faiss::fvec_inner_product(x, xb + it->second * d, d), ids[i]);
        }
        auto better = [](const std::pair<float, int64_t>& a,
                         const std::pair<float, int64_t>& b) {
            if (a.first != b.first) {
                return a.first > b.first;
            }
            return a.second < b.second;
        };
        size_t kk = std::min(scored.size(), static_cast<size_t>(k));
        std::partial_sort(scored.begin(), scored.begin() + kk, scored.end(),
                          better);
        for (size_t i = 0; i < kk; i++) {
            distances[i] = scored[i].first;
            labels[i] = scored[i].second;
        }
        *found = static_cast<int64_t>(kk);
    });
}

int poi_set_stamps(poi_index* ix, int64_t n, const int64_t* ids,
                   const int64_t* stamps, int64_t* set, char* err,
                   size_t errlen) {
    *set = 0;
    return guard(err, errlen, [&] {
        if (ix->hnsw == nullptr) {
            throw std::runtime_error("stamps need an HNSW index");
        }
        for (int64_t i = 0; i < n; i++) {
            auto it = ix->map->rev_map.find(ids[i]);
            if (it != ix->map->rev_map.end()) {
                ix->stamps[static_cast<size_t>(it->second)] = stamps[i];
                (*set)++;
            }
        }
    });
}

namespace {

// StampRange selects the storage positions whose stamp lies in [lo, hi].
struct StampRange : faiss::IDSelector {
    const int64_t* stamps;
    int64_t lo, hi;
    StampRange(const int64_t* s, int64_t l, int64_t h) : stamps(s), lo(l), hi(h) {}
    bool is_member(faiss::Index::idx_t pos) const override {
        const int64_t s = stamps[pos];
        return s >= lo && s <= hi;
    }
};

} // namespace

int poi_search_hnsw_range(poi_index* ix, const float* x, int64_t lo,
                          int64_t hi, int64_t k, int ef, float* distances,
                          int64_t* labels, int64_t* found, char* err,
                          size_t errlen) {
    *found = 0;
    return guard(err, errlen, [&] {
        if (ix->hnsw == nullptr) {
            throw std::runtime_error("stamped graph search needs an HNSW index");
        }
        if (k <= 0 || ef <= 0) {
            throw std::runtime_error("k and ef must be positive");
        }
        if (ix->map->ntotal == 0) {
            return;
        }
        // The graph works on storage positions, and FAISS 1.7.3's
        // IndexIDMap2 rejects search parameters, so the inner index is
        // searched directly and its positions mapped back to ids.
        StampRange sel(ix->stamps.data(), lo, hi);
        faiss::SearchParametersHNSW params;
        params.efSearch = static_cast<int>(std::max<int64_t>(ef, k));
        params.sel = &sel;
        std::vector<float> dist(static_cast<size_t>(k));
        std::vector<faiss::Index::idx_t> pos(static_cast<size_t>(k));
        ThreadGuard tg(1);
        // FAISS 1.7.3 sizes the walk's candidate queue by the index's own
        // efSearch and uses the parameter only to stop: a wider beam must
        // be set on the index for the call.
        EfScope scope(ix->hnsw->hnsw, params.efSearch);
        ix->hnsw->search(1, x, k, dist.data(), pos.data(), &params);
        int64_t w = 0;
        for (int64_t i = 0; i < k; i++) {
            if (pos[i] < 0) {
                continue;
            }
            distances[w] = dist[i];
            labels[w] = ix->map->id_map[pos[i]];
            w++;
        }
        *found = w;
    });
}

int poi_remove(poi_index* ix, int64_t n, const int64_t* ids, int64_t* removed,
               char* err, size_t errlen) {
    *removed = 0;
    return guard(err, errlen, [&] {
        if (ix->kind != POI_KIND_FLAT) {
            throw std::runtime_error("remove is not supported by HNSW indexes");
        }
        faiss::IDSelectorBatch sel(n, ids);
        *removed = static_cast<int64_t>(ix->map->remove_ids(sel));
    });
}

int64_t poi_ntotal(const poi_index* ix) { return ix->map->ntotal; }

int poi_kind(const poi_index* ix) { return ix->kind; }

int poi_dim(const poi_index* ix) { return static_cast<int>(ix->map->d); }

int poi_set_ef_search(poi_index* ix, int ef, char* err, size_t errlen) {
    return guard(err, errlen, [&] {
        if (ix->hnsw == nullptr) {
            throw std::runtime_error("efSearch applies to HNSW indexes only");
        }
        if (ef <= 0) {
            throw std::runtime_error("efSearch must be positive");
        }
        // Set on the inner index: in FAISS 1.7.3 IndexIDMap rejects
        // per-search parameters.
        ix->hnsw->hnsw.efSearch = ef;
    });
}

int poi_get_hnsw_params(const poi_index* ix, int* m, int* ef_construction,
                        int* ef_search) {
    if (ix->hnsw == nullptr) {
        return -1;
    }
    *m = ix->hnsw->hnsw.nb_neighbors(1);
    *ef_construction = ix->hnsw->hnsw.efConstruction;
    *ef_search = ix->hnsw->hnsw.efSearch;
    return 0;
}

int poi_export(const poi_index* ix, float* x, int64_t* ids, char* err,
               size_t errlen) {
    return guard(err, errlen, [&] {
        const faiss::Index* inner = ix->map->index;
        if (ix->hnsw != nullptr) {
            inner = ix->hnsw->storage;
        }
        int64_t n = ix->map->ntotal;
        if (n == 0) {
            return;
        }
        inner->reconstruct_n(0, n, x);
        std::memcpy(ids, ix->map->id_map.data(), sizeof(int64_t) * n);
    });
}

int poi_reconstruct(const poi_index* ix, int64_t n, const int64_t* ids,
                    float* x, char* err, size_t errlen) {
    return guard(err, errlen, [&] {
        const size_t d = static_cast<size_t>(ix->map->d);
        for (int64_t i = 0; i < n; i++) {
            // IndexIDMap2::reconstruct throws for an unknown id.
            ix->map->reconstruct(ids[i], x + i * d);
        }
    });
}

int poi_write(const poi_index* ix, const char* fname, char* err, size_t errlen) {
    return guard(err, errlen, [&] { faiss::write_index(ix->map, fname); });
}

int poi_read(const char* fname, poi_index** out, char* err, size_t errlen) {
    *out = nullptr;
    return guard(err, errlen, [&] {
        faiss::Index* raw = faiss::read_index(fname);
        auto* map = dynamic_cast<faiss::IndexIDMap2*>(raw);
        if (map == nullptr) {
            delete raw;
            throw std::runtime_error("not an IndexIDMap2 index");
        }
        int kind = 0;
        faiss::IndexHNSW* hnsw = nullptr;
        if (auto* h = dynamic_cast<faiss::IndexHNSW*>(map->index)) {
            if (dynamic_cast<faiss::IndexFlat*>(h->storage) != nullptr) {
                hnsw = h;
                kind = POI_KIND_HNSW;
            }
        } else if (dynamic_cast<faiss::IndexFlat*>(map->index) != nullptr) {
            kind = POI_KIND_FLAT;
        }
        if (kind == 0 || map->metric_type != faiss::METRIC_INNER_PRODUCT ||
            map->index->metric_type != faiss::METRIC_INNER_PRODUCT) {
            delete raw;
            throw std::runtime_error(
                "unsupported index: want inner-product flat or HNSW-flat "
                "under IndexIDMap2");
        }
        map->own_fields = true;
        auto* ix = new (std::nothrow) poi_index;
        if (ix == nullptr) {
            delete raw;
            throw std::bad_alloc();
        }
        ix->map = map;
        ix->hnsw = hnsw;
        ix->kind = kind;
        if (hnsw != nullptr) {
            // Stamps are not part of the FAISS file: the caller sets them
            // again (poi_set_stamps) before it filters by them.
            try {
                ix->stamps.assign(static_cast<size_t>(map->ntotal), 0);
            } catch (...) {
                poi_free(ix);
                throw;
            }
        }
        *out = ix;
    });
}

} // extern "C"
