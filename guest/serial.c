/* Serial console (COM1, 8250 THR only: the VMM's LSR always reads ready, so it is not polled)
 * and power-off. One spinlock keeps lines from different vCPUs apart. */
#include <stdarg.h>

#include "kernel.h"

static volatile u32 console_lock;

static void lock(void) {
  while (__atomic_exchange_n(&console_lock, 1, __ATOMIC_ACQUIRE)) cpu_relax();
}

static void unlock(void) {
  __atomic_store_n(&console_lock, 0, __ATOMIC_RELEASE);
}

void console_write(const char* s, u64 len) {
  lock();
  for (u64 i = 0; i < len; i++) outb(GLASSBOX_PORT_COM1, (u8)s[i]);
  unlock();
}

struct buf {
  char data[160];
  u32 len;
};

static void put(struct buf* b, char c) {
  if (b->len < sizeof(b->data)) b->data[b->len++] = c;
}

static void put_num(struct buf* b, u64 v, u32 base, int negative) {
  char tmp[20];
  int n = 0;
  do {
    tmp[n++] = "0123456789abcdef"[v % base];
    v /= base;
  } while (v);
  if (negative) put(b, '-');
  while (n) put(b, tmp[--n]);
}

/* A small printf: %s %c %d %u %x with optional l, and %%. Formats, then writes one line. */
void kprintf(const char* fmt, ...) {
  struct buf b;
  b.len = 0;
  va_list ap;
  va_start(ap, fmt);
  for (; *fmt; fmt++) {
    if (*fmt != '%') {
      put(&b, *fmt);
      continue;
    }
    fmt++;
    int is_long = 0;
    if (*fmt == 'l') is_long = 1, fmt++;
    switch (*fmt) {
      case 's':
        for (const char* s = va_arg(ap, const char*); *s; s++) put(&b, *s);
        break;
      case 'c':
        put(&b, (char)va_arg(ap, int));
        break;
      case 'd': {
        long v = is_long ? va_arg(ap, long) : va_arg(ap, int);
        put_num(&b, v < 0 ? (u64)-v : (u64)v, 10, v < 0);
        break;
      }
      case 'u':
        put_num(&b, is_long ? va_arg(ap, u64) : va_arg(ap, u32), 10, 0);
        break;
      case 'x':
        put_num(&b, is_long ? va_arg(ap, u64) : va_arg(ap, u32), 16, 0);
        break;
      default:
        put(&b, '%');
        if (*fmt)
          put(&b, *fmt);
        else
          fmt--;
    }
  }
  va_end(ap);
  console_write(b.data, b.len);
}

void power_off(u8 status) {
  for (;;) {
    outb(GLASSBOX_PORT_POWER, status);
    __asm__ volatile("cli; hlt");
  }
}
