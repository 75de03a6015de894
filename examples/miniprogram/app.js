// Logs in to wxunion as soon as the mini program starts, so pages can call it at once.
const wxunion = require('./utils/wxunion.js');

App({
  globalData: { user: null },

  onLaunch() {
    wxunion
      .login()
      .then((session) => {
        // isNewUser: this person has never been seen in any app of your open platform.
        this.globalData.user = session.user;
      })
      .catch((err) => console.error('wxunion login failed', err.code, err.message));
  },
});
