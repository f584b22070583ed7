# Sourced by demo.sh and test.sh: decides where their VMs run.
#   GLASSBOX_LAB unset  here when /dev/kvm is usable, in the lab (scripts/lab.sh) otherwise
#   GLASSBOX_LAB=1      always in the lab
#   GLASSBOX_LAB=0      never in the lab (fails without a usable /dev/kvm)
# Inside the lab GLASSBOX_IN_LAB=1 is set, and everything runs where it is.

kvm_usable() {
  [ -c /dev/kvm ] && (exec 3<>/dev/kvm) 2>/dev/null
}

# Prints "lab" or "here", or fails with a message when neither works.
kvm_place() {
  if [ -n "${GLASSBOX_IN_LAB-}" ]; then
    echo here
    return
  fi
  case "${GLASSBOX_LAB-}" in
    1) echo lab ;;
    0)
      if kvm_usable; then
        echo here
      else
        echo "$1: GLASSBOX_LAB=0 forbids the lab, and /dev/kvm is missing or not usable here" >&2
        return 1
      fi
      ;;
    "")
      if kvm_usable; then echo here; else echo lab; fi
      ;;
    *)
      echo "$1: GLASSBOX_LAB must be 0, 1 or unset, not '$GLASSBOX_LAB'" >&2
      return 1
      ;;
  esac
}
