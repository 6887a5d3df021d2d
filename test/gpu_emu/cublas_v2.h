/*
test/gpu_emu/cublas_v2.h: the part of cuBLAS that train.cu uses, on the CPU.

cublasSgemm here is the BLAS definition, written for column-major storage and
nothing else, so that train.cu's mapping of its row-major products onto cuBLAS
(matmul_batched() there) is checked against an independent reading of the same
contract:

    C = alpha * op(A) op(B) + beta * C,   C (m,n), op(A) (m,k), op(B) (k,n)
    element (i,j) of a column-major X with leading dimension ldx: X[i + j * ldx]
    op(X) = X ('N') or X^T ('T' and 'C', the same for real numbers)

cublasSgemmStridedBatched is batchCount such products, the p-th at A + p*strideA,
B + p*strideB, C + p*strideC (strides in elements), one after the other.

Their arguments are refused as cuBLAS refuses them (CUBLAS_STATUS_INVALID_VALUE): a
negative size or batchCount, an unknown operation, a leading dimension smaller than
the rows it stores (lda < max(1, m) for 'N', max(1, k) for 'T'; ldb < max(1, k) or
max(1, n); ldc < max(1, m)), or no alpha or beta. Each operand of each product must
lie, as far as the call reads or writes it, inside one managed allocation; otherwise
the queued work faults with an illegal address, as a GPU would. With beta = 0, C is
not read (it may hold NaN), as BLAS specifies. Each element sums its k products in
order, in float.
*/
#ifndef GPU_EMU_CUBLAS_V2_H
#define GPU_EMU_CUBLAS_V2_H
#include "cuda_runtime.h"
#include <algorithm>

typedef enum {
    CUBLAS_STATUS_SUCCESS = 0,
    CUBLAS_STATUS_NOT_INITIALIZED = 1,
    CUBLAS_STATUS_ALLOC_FAILED = 3,
    CUBLAS_STATUS_INVALID_VALUE = 7,
    CUBLAS_STATUS_EXECUTION_FAILED = 13,
} cublasStatus_t;

typedef enum { CUBLAS_OP_N = 0, CUBLAS_OP_T = 1, CUBLAS_OP_C = 2 } cublasOperation_t;

typedef enum {
    CUBLAS_DEFAULT_MATH = 0,
    CUBLAS_TENSOR_OP_MATH = 1,
    CUBLAS_PEDANTIC_MATH = 2,
    CUBLAS_TF32_TENSOR_OP_MATH = 3,
} cublasMath_t;

struct cublasContext {
    cublasMath_t math_mode; // recorded; every product here is plain fp32
};
typedef struct cublasContext *cublasHandle_t;

inline cublasStatus_t cublasCreate(cublasHandle_t *handle) {
    if (handle == nullptr) { return CUBLAS_STATUS_INVALID_VALUE; }
    *handle = new cublasContext{CUBLAS_DEFAULT_MATH};
    return CUBLAS_STATUS_SUCCESS;
}

inline cublasStatus_t cublasDestroy(cublasHandle_t handle) {
    if (handle == nullptr) { return CUBLAS_STATUS_NOT_INITIALIZED; }
    cudaDeviceSynchronize(); // cuBLAS waits for its work before it goes
    delete handle;
    return CUBLAS_STATUS_SUCCESS;
}

inline cublasStatus_t cublasSetMathMode(cublasHandle_t handle, cublasMath_t mode) {
    if (handle == nullptr) { return CUBLAS_STATUS_NOT_INITIALIZED; }
    handle->math_mode = mode;
    return CUBLAS_STATUS_SUCCESS;
}

namespace gpu_emu {
// whether the elements a column-major operand's call touches, (rows, cols) with
// leading dimension ld, lie inside one managed allocation
inline bool operand_is_managed(const float *x, int rows, int cols, int ld) {
    size_t extent = (size_t)(cols - 1) * (size_t)ld + (size_t)rows; // one past the last element
    return is_managed(x, extent * sizeof(float));
}

// cublasSgemm and cublasSgemmStridedBatched: batch products, product p at A + p*strideA,
// B + p*strideB, C + p*strideC; `name` is the call's, for messages
inline cublasStatus_t sgemm(const char *name, cublasHandle_t handle, cublasOperation_t transa,
                            cublasOperation_t transb, int m, int n, int k, const float *alpha, const float *A, int lda,
                            long long strideA, const float *B, int ldb, long long strideB, const float *beta, float *C,
                            int ldc, long long strideC, int batch) {
    auto max1 = [](int x) { return x > 1 ? x : 1; };
    auto known = [](cublasOperation_t op) { return op == CUBLAS_OP_N || op == CUBLAS_OP_T || op == CUBLAS_OP_C; };
    if (handle == nullptr) { return CUBLAS_STATUS_NOT_INITIALIZED; }
    if (m < 0 || n < 0 || k < 0 || batch < 0 || !known(transa) || !known(transb) || alpha == nullptr ||
        beta == nullptr || lda < max1(transa == CUBLAS_OP_N ? m : k) || ldb < max1(transb == CUBLAS_OP_N ? k : n) ||
        ldc < max1(m)) {
        report_refused("%s: refused (m=%d n=%d k=%d, op %d %d, lda=%d ldb=%d ldc=%d, batch %d)", name, m, n, k,
                       (int)transa, (int)transb, lda, ldb, ldc, batch);
        return CUBLAS_STATUS_INVALID_VALUE;
    }
    if (m == 0 || n == 0 || batch == 0) { return CUBLAS_STATUS_SUCCESS; }
    float a = *alpha, b = *beta; // read now, as host pointers are (the call returns before the work runs)
    bool reads_ab = k > 0 && a != 0.0f;
    // op(A) is (m,k): A is stored (m,k) for 'N', (k,m) otherwise; op(B) (k,n) likewise
    bool ta = transa != CUBLAS_OP_N, tb = transb != CUBLAS_OP_N;
    char bad[160] = "";
    for (int p = 0; p < batch && !bad[0]; p++) {
        const char *which = nullptr;
        if (reads_ab && !operand_is_managed(A + p * strideA, ta ? k : m, ta ? m : k, lda)) {
            which = "A";
        } else if (reads_ab && !operand_is_managed(B + p * strideB, tb ? n : k, tb ? k : n, ldb)) {
            which = "B";
        } else if (!operand_is_managed(C + p * strideC, m, n, ldc)) {
            which = "C";
        }
        if (which) {
            snprintf(bad, sizeof(bad), "%s: %s of product %d is not inside one managed allocation (m=%d n=%d k=%d)",
                     name, which, p, m, n, k);
        }
    }
    std::string fault_what = bad;
    enqueue([=] {
        if (!fault_what.empty()) {
            fault(cudaErrorIllegalAddress, fault_what.c_str());
            return;
        }
        // op(A) of every product copied column by column, so that the loop below reads it
        // contiguously; then each column j of each product's C, in one parallel loop
        std::vector<float> opa(reads_ab ? (size_t)batch * m * k : 0);
        for (int p = 0; reads_ab && p < batch; p++) {
            const float *Ap = A + p * strideA;
            float *opa_p = &opa[(size_t)p * m * k];
            for (int l = 0; l < k; l++) {
                for (int i = 0; i < m; i++) { opa_p[(size_t)l * m + i] = ta ? Ap[l + (size_t)i * lda] : Ap[i + (size_t)l * lda]; }
            }
        }
#ifdef _OPENMP
        #pragma omp parallel
#endif
        {
            std::vector<float> sum(m);
#ifdef _OPENMP
            #pragma omp for
#endif
            for (long long pj = 0; pj < (long long)batch * n; pj++) {
                int p = (int)(pj / n), j = (int)(pj % n);
                const float *Bp = B + p * strideB;
                std::fill(sum.begin(), sum.end(), 0.0f);
                for (int l = 0; reads_ab && l < k; l++) {
                    float blj = tb ? Bp[j + (size_t)l * ldb] : Bp[l + (size_t)j * ldb]; // op(B)(l,j)
                    const float *a_l = &opa[((size_t)p * k + l) * m];
                    for (int i = 0; i < m; i++) { sum[i] += a_l[i] * blj; }
                }
                float *c_j = C + p * strideC + (size_t)j * ldc;
                for (int i = 0; i < m; i++) { c_j[i] = b == 0.0f ? a * sum[i] : a * sum[i] + b * c_j[i]; }
            }
        }
    });
    return CUBLAS_STATUS_SUCCESS;
}
} // namespace gpu_emu

inline cublasStatus_t cublasSgemm(cublasHandle_t handle, cublasOperation_t transa, cublasOperation_t transb, int m,
                                  int n, int k, const float *alpha, const float *A, int lda, const float *B, int ldb,
                                  const float *beta, float *C, int ldc) {
    return gpu_emu::sgemm("cublasSgemm", handle, transa, transb, m, n, k, alpha, A, lda, 0, B, ldb, 0, beta, C, ldc, 0, 1);
}

// batchCount products of the shapes above, the p-th at A + p*strideA, B + p*strideB and
// C + p*strideC (strides in elements; 0 reuses one operand for every product)
inline cublasStatus_t cublasSgemmStridedBatched(cublasHandle_t handle, cublasOperation_t transa,
                                                cublasOperation_t transb, int m, int n, int k, const float *alpha,
                                                const float *A, int lda, long long strideA, const float *B, int ldb,
                                                long long strideB, const float *beta, float *C, int ldc,
                                                long long strideC, int batchCount) {
    return gpu_emu::sgemm("cublasSgemmStridedBatched", handle, transa, transb, m, n, k, alpha, A, lda, strideA, B, ldb,
                          strideB, beta, C, ldc, strideC, batchCount);
}
#endif
