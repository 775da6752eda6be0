#ifndef TANDEM_CHTTPPARSER_SHIM_H
#define TANDEM_CHTTPPARSER_SHIM_H
#include <http_parser.h>
#endif
