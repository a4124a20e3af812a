// "Turn all on": switches every requested type on; the owner can then
// switch single types off again before allowing.
document.getElementById('all-on')?.addEventListener('click', () => {
  for (const box of document.querySelectorAll('input[type=checkbox]')) {
    box.checked = true;
  }
});
