// The whole KVMI wire ABI in one include.
#pragma once

#include "glassbox/kvmi/control.h"
#include "glassbox/kvmi/errors.h"
#include "glassbox/kvmi/events.h"
#include "glassbox/kvmi/handshake.h"
#include "glassbox/kvmi/ids.h"
#include "glassbox/kvmi/messages.h"
#include "glassbox/kvmi/names.h"
