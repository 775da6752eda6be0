#ifndef TANDEM_CLIBUV_SHIM_H
#define TANDEM_CLIBUV_SHIM_H
#include <uv.h>
#include <netinet/in.h>
#include <arpa/inet.h>
#include <signal.h>
#endif
