/*
 * molt_dist.h — communicators for data-parallel molt_train / molt_distill
 * (issue 18), in libmolt_dist.a (links Open MPI; NCCL too in a `make cuda`
 * build). libmolt itself names neither: a context gets a communicator through
 * molt_ctx_set_comm (molt.h), and a process that never calls molt_dist_init
 * never touches MPI.
 *
 * One process per rank, launched by `mpirun -np N molt ...`. A CPU run
 * reduces host buffers with MPI (molt_comm_mpi_new); a GPU run puts rank r on
 * cuda:<local rank> and reduces device buffers with NCCL on the exec's stream
 * (molt_comm_nccl_new: ncclUniqueId broadcast over MPI, NCCL_NVLS_ENABLE=0).
 */
#ifndef MOLT_DIST_H
#define MOLT_DIST_H

#include <stddef.h>

#include "molt.h"

#ifdef __cplusplus
extern "C" {
#endif

// 1 when this process was started by mpirun (OMPI_COMM_WORLD_SIZE is set).
int         molt_dist_launched(void);
// This process's rank on its host (OMPI_COMM_WORLD_LOCAL_RANK), 0 when not launched by mpirun.
int         molt_dist_local_rank(void);
// MPI_Init (once). MOLT_ERR_UNSUPPORTED when molt was built without MPI.
molt_status molt_dist_init(int *argc, char ***argv, char *err, size_t n);
// MPI_Finalize when molt_dist_init succeeded (every rank, after its last collective).
void        molt_dist_finalize(void);
// A communicator over MPI_COMM_WORLD for host (CPU backend) buffers.
molt_status molt_comm_mpi_new(molt_comm **out, char *err, size_t n);
// A communicator for buffers on CUDA device `device` (the rank's GPU, already the
// context's device): NCCL, its unique id broadcast from rank 0 over MPI.
// MOLT_ERR_UNSUPPORTED in a build without CUDA.
molt_status molt_comm_nccl_new(int device, molt_comm **out, char *err, size_t n);
// Stops the whole job (every rank) with exit code code; does not return.
void        molt_comm_abort(molt_comm *c, int code);
void        molt_comm_free(molt_comm *c);

#ifdef __cplusplus
}
#endif
#endif
